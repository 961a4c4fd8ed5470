//! Model selection: [`train_test_split`], [`k_fold`], [`stratified_k_fold`] and
//! [`cross_validate`].
//!
//! Sizes follow scikit-learn: a test fraction `f` of `n` samples gives `ceil(f·n)` test rows.
//! Every shuffle takes an explicit seed.

use rand::seq::SliceRandom;

use crate::{rng, Dataset, Error, Fit, Predict, Result};

/// Row indices of a train/test split.
pub type Split = (Vec<usize>, Vec<usize>);

/// Shuffled split of `n` rows with `test_size` in (0, 1) of them in the test part.
///
/// With `stratify` (one class label per row), each class is split in the same proportion, as
/// scikit-learn's `stratify=y` does.
pub fn train_test_split(
    n: usize,
    test_size: f64,
    seed: u64,
    stratify: Option<&[usize]>,
) -> Result<Split> {
    if !(test_size > 0.0 && test_size < 1.0) {
        return Err(Error::param("test_size", test_size, "a fraction in (0, 1)"));
    }
    let n_test = (test_size * n as f64).ceil() as usize;
    if n_test == 0 || n_test >= n {
        return Err(Error::InvalidData(format!(
            "test_size = {test_size} of {n} samples leaves {n_test} test and {} train samples; both must be at least 1",
            n.saturating_sub(n_test)
        )));
    }
    let mut r = rng(seed);
    let (mut train, mut test) = match stratify {
        None => {
            let mut idx: Vec<usize> = (0..n).collect();
            idx.shuffle(&mut r);
            let test = idx[..n_test].to_vec();
            (idx[n_test..].to_vec(), test)
        }
        Some(labels) => {
            if labels.len() != n {
                return Err(Error::Shape(format!(
                    "stratify has {} labels for {n} samples",
                    labels.len()
                )));
            }
            let groups = group_by_class(labels);
            // Allocate test rows per class by largest remainder, as scikit-learn does.
            let exact: Vec<f64> = groups
                .iter()
                .map(|g| g.len() as f64 * n_test as f64 / n as f64)
                .collect();
            let mut alloc: Vec<usize> = exact.iter().map(|e| e.floor() as usize).collect();
            let mut rest = n_test - alloc.iter().sum::<usize>();
            let mut order: Vec<usize> = (0..groups.len()).collect();
            order.sort_by(|&a, &b| {
                (exact[b] - exact[b].floor())
                    .total_cmp(&(exact[a] - exact[a].floor()))
                    .then(a.cmp(&b))
            });
            for &c in order.iter().cycle().take(groups.len() * 2) {
                if rest == 0 {
                    break;
                }
                if alloc[c] < groups[c].len() {
                    alloc[c] += 1;
                    rest -= 1;
                }
            }
            let (mut train, mut test) = (Vec::new(), Vec::new());
            for (g, &k) in groups.into_iter().zip(&alloc) {
                let mut g = g;
                g.shuffle(&mut r);
                test.extend_from_slice(&g[..k]);
                train.extend_from_slice(&g[k..]);
            }
            (train, test)
        }
    };
    // A stratified split should not be ordered by class.
    if stratify.is_some() {
        train.shuffle(&mut r);
        test.shuffle(&mut r);
    }
    Ok((std::mem::take(&mut train), std::mem::take(&mut test)))
}

fn group_by_class(labels: &[usize]) -> Vec<Vec<usize>> {
    let k = labels.iter().copied().max().map_or(0, |m| m + 1);
    let mut groups = vec![Vec::new(); k];
    for (i, &l) in labels.iter().enumerate() {
        groups[l].push(i);
    }
    groups.retain(|g| !g.is_empty());
    groups
}

fn check_k(k: usize, n: usize) -> Result<()> {
    if k < 2 {
        return Err(Error::param("k", k, "an integer >= 2"));
    }
    if k > n {
        return Err(Error::InvalidData(format!(
            "cannot make {k} folds from {n} samples"
        )));
    }
    Ok(())
}

/// `k` folds of `n` rows; the first `n % k` folds get one extra row (scikit-learn's `KFold`).
/// With `shuffle = Some(seed)` the rows are shuffled first.
pub fn k_fold(n: usize, k: usize, shuffle: Option<u64>) -> Result<Vec<Split>> {
    check_k(k, n)?;
    let mut idx: Vec<usize> = (0..n).collect();
    if let Some(seed) = shuffle {
        idx.shuffle(&mut rng(seed));
    }
    let mut folds = Vec::with_capacity(k);
    let mut start = 0;
    for f in 0..k {
        let size = n / k + usize::from(f < n % k);
        let test = idx[start..start + size].to_vec();
        let train = idx[..start]
            .iter()
            .chain(&idx[start + size..])
            .copied()
            .collect();
        folds.push((train, test));
        start += size;
    }
    Ok(folds)
}

/// `k` folds that keep each class's proportion: each class's rows are dealt round-robin over
/// the folds. With `shuffle = Some(seed)` each class is shuffled first.
pub fn stratified_k_fold(labels: &[usize], k: usize, shuffle: Option<u64>) -> Result<Vec<Split>> {
    let n = labels.len();
    check_k(k, n)?;
    let mut r = shuffle.map(rng);
    let mut fold_of = vec![0usize; n];
    let mut next = 0usize;
    for mut g in group_by_class(labels) {
        if let Some(r) = r.as_mut() {
            g.shuffle(r);
        }
        for i in g {
            fold_of[i] = next % k;
            next += 1;
        }
    }
    Ok((0..k)
        .map(|f| {
            let (test, train): (Vec<usize>, Vec<usize>) = (0..n).partition(|&i| fold_of[i] == f);
            (train, test)
        })
        .collect())
}

/// One fold's score.
#[derive(Debug, Clone, PartialEq)]
pub struct FoldScore {
    /// Rows trained on.
    pub n_train: usize,
    /// Rows scored.
    pub n_test: usize,
    /// The score (R² for regression, accuracy for classification).
    pub score: f64,
}

/// Fit `params` on each fold's training rows and score the held-out rows: R² for regression,
/// accuracy for classification (scikit-learn's default `score`). Classification uses
/// stratified folds, regression plain folds, both shuffled with `seed`.
pub fn cross_validate<F: Fit>(
    params: &F,
    data: &Dataset,
    k: usize,
    seed: u64,
) -> Result<Vec<FoldScore>> {
    let folds = match data.task() {
        crate::Task::Classification => stratified_k_fold(&data.labels(), k, Some(seed))?,
        crate::Task::Regression => k_fold(data.n_samples(), k, Some(seed))?,
    };
    folds
        .iter()
        .map(|(train, test)| {
            let model = params.fit(&data.select(train))?;
            let held = data.select(test);
            let pred = model.predict(held.x.view())?;
            let y = held.y.as_slice().unwrap_or(&[]).to_vec();
            let p = pred.to_vec();
            let score = match data.task() {
                crate::Task::Regression => crate::metrics::r2(&y, &p),
                crate::Task::Classification => {
                    let t: Vec<usize> = y.iter().map(|&v| v as usize).collect();
                    let q: Vec<usize> = p.iter().map(|&v| v as usize).collect();
                    crate::metrics::accuracy(&t, &q)
                }
            };
            Ok(FoldScore {
                n_train: train.len(),
                n_test: test.len(),
                score,
            })
        })
        .collect()
}

/// Mean and population standard deviation of fold scores.
pub fn mean_std(scores: &[FoldScore]) -> (f64, f64) {
    let n = scores.len().max(1) as f64;
    let m = scores.iter().map(|s| s.score).sum::<f64>() / n;
    let v = scores.iter().map(|s| (s.score - m).powi(2)).sum::<f64>() / n;
    (m, v.sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_sizes_and_disjointness() {
        let (tr, te) = train_test_split(101, 0.2, 7, None).unwrap();
        assert_eq!(te.len(), 21); // ceil(20.2)
        assert_eq!(tr.len(), 80);
        let mut all: Vec<usize> = tr.iter().chain(&te).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..101).collect::<Vec<_>>());
        assert_eq!(
            train_test_split(101, 0.2, 7, None).unwrap(),
            (tr.clone(), te.clone())
        );
        assert_ne!(train_test_split(101, 0.2, 8, None).unwrap().1, te);
        assert!(train_test_split(10, 1.5, 0, None).is_err());
        assert!(train_test_split(1, 0.5, 0, None).is_err());
    }

    #[test]
    fn stratified_split_keeps_proportions() {
        let labels: Vec<usize> = (0..150).map(|i| i / 50).collect();
        let (tr, te) = train_test_split(150, 0.2, 0, Some(&labels)).unwrap();
        assert_eq!(te.len(), 30);
        for c in 0..3 {
            assert_eq!(te.iter().filter(|&&i| labels[i] == c).count(), 10);
            assert_eq!(tr.iter().filter(|&&i| labels[i] == c).count(), 40);
        }
    }

    #[test]
    fn folds_partition_the_rows() {
        let folds = k_fold(10, 3, None).unwrap();
        let sizes: Vec<usize> = folds.iter().map(|f| f.1.len()).collect();
        assert_eq!(sizes, vec![4, 3, 3]);
        assert_eq!(folds[0].1, vec![0, 1, 2, 3]);
        let labels = [0, 0, 0, 0, 1, 1, 1, 1, 1, 1];
        let sf = stratified_k_fold(&labels, 2, Some(3)).unwrap();
        for (train, test) in &sf {
            assert_eq!(train.len() + test.len(), 10);
            assert_eq!(test.iter().filter(|&&i| labels[i] == 0).count(), 2);
        }
        assert!(k_fold(3, 5, None).is_err());
        assert!(k_fold(3, 1, None).is_err());
    }
}
