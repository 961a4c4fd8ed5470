//! The prompt-fidelity benchmark: judges against ground truth, scoring rules, prompt sets,
//! the digits crop, bad prompt files.

use kiln_data::captioned_digits::to_rgb32;
use kiln_data::idx::{load_mnist, MnistSplit};
use kiln_data::shapes::{
    generate, held_out_prompts, is_held_out, parse_prompt, render_prompt, Colour, ObjectSpec,
    Prompt, ShapeObject, ShapesParams, HELD_OUT_SHAPE_CELL, HELD_OUT_SHAPE_COLOUR,
};
use kiln_models::image_eval::*;
use kiln_models::judge::{CellReading, CELLS};
use kiln_nn::Result;

/// Ground-truth objects for a prompt and seed (what `GroundTruthShapes` draws).
fn truth(prompt: &str, seed: u64) -> Vec<ShapeObject> {
    render_prompt(&parse_prompt(prompt).unwrap(), seed)
        .unwrap()
        .objects
}

/// A fake model whose "pictures" spell out the ground truth: bytes `4·cell ..` hold
/// `[present, shape, colour, size]`; `colour_shift` draws every object in another colour.
struct Spelled {
    colour_shift: usize,
}

impl ImageSource for Spelled {
    fn dataset(&self) -> &str {
        "shapes"
    }

    fn draw(&self, prompt: &str, n: usize, seed: u64, _rerank: bool) -> Result<Vec<Vec<u8>>> {
        Ok((0..n as u64)
            .map(|k| {
                let mut pic = vec![0u8; 32 * 32 * 3];
                for o in truth(prompt, seed * 1000 + k) {
                    let i = o.cell.index() * 4;
                    let colour = (o.colour.index() + self.colour_shift) % 6;
                    pic[i..i + 4].copy_from_slice(&[
                        1,
                        o.shape.index() as u8,
                        colour as u8,
                        o.size.index() as u8,
                    ]);
                }
                pic
            })
            .collect())
    }
}

/// The fake judge that reads [`Spelled`] pictures perfectly.
struct SpelledReader;

impl ShapesReader for SpelledReader {
    fn read_pictures(&self, pictures: &[Vec<u8>]) -> Result<Vec<[CellReading; CELLS]>> {
        Ok(pictures
            .iter()
            .map(|p| {
                std::array::from_fn(|c| CellReading {
                    present: p[4 * c] == 1,
                    shape: p[4 * c + 1] as usize,
                    colour: p[4 * c + 2] as usize,
                    size: p[4 * c + 3] as usize,
                })
            })
            .collect())
    }
}

/// Renders each prompt with kiln-data's ground truth, colours changed (a model that gets only
/// the colour wrong).
struct WrongColour;

impl ImageSource for WrongColour {
    fn dataset(&self) -> &str {
        "shapes"
    }

    fn draw(&self, prompt: &str, n: usize, seed: u64, _rerank: bool) -> Result<Vec<Vec<u8>>> {
        let mut p = parse_prompt(prompt)?;
        for o in &mut p.objects {
            o.colour = Colour::ALL[(o.colour.index() + 1) % 6];
        }
        (0..n as u64)
            .map(|k| Ok(render_prompt(&p, seed * 1000 + k)?.image))
            .collect()
    }
}

fn one_object_prompts() -> Vec<Prompt> {
    seen_prompts()
        .into_iter()
        .chain(held_out_prompt_set())
        .filter(|p| p.objects.len() == 1)
        .collect()
}

fn settings(samples: usize) -> EvalSettings {
    EvalSettings {
        samples,
        seed: 3,
        rerank: vec![false, true],
    }
}

fn group(r: &ShapesReport, objects: usize, c: Combinations, rerank: bool) -> &GroupScores {
    r.groups
        .iter()
        .find(|g| g.objects == objects && g.combinations == c && g.rerank == rerank)
        .unwrap()
}

#[test]
fn scoring_is_exact_with_a_perfect_judge() {
    let prompts: Vec<Prompt> = seen_prompts()
        .into_iter()
        .chain(held_out_prompt_set())
        .collect();
    let r = evaluate_shapes(
        &Spelled { colour_shift: 0 },
        &SpelledReader,
        &prompts,
        &settings(3),
    )
    .unwrap();
    assert_eq!(r.groups.len(), 8, "1/2 objects × seen/held-out × rerank");
    for g in &r.groups {
        let c = &g.counts;
        assert!(c.pictures > 0 && c.objects == c.pictures * g.objects);
        assert_eq!(c.all_correct, c.pictures, "{g:?}");
        assert_eq!(c.shape_right, c.objects);
        assert_eq!(c.colour_right, c.objects);
        assert_eq!(
            (c.size_right, c.position_right),
            (c.sizes_asked, c.positions_asked)
        );
        assert_eq!(g.rates.all_correct, Some(1.0));
    }
    // the seen two-object prompts include captions that leave size and position open
    let g = group(&r, 2, Combinations::Seen, false);
    assert!(g.counts.positions_asked < g.counts.objects);
    assert!(g.counts.positions_asked > 0);
    assert_eq!(
        group(&r, 1, Combinations::HeldOut, true).counts.prompts,
        held_out_prompts().len()
    );
}

#[test]
fn wrong_colour_is_wrong_on_colour_only() {
    let prompts: Vec<Prompt> = seen_prompts()
        .into_iter()
        .chain(held_out_prompt_set())
        .collect();
    let r = evaluate_shapes(
        &Spelled { colour_shift: 1 },
        &SpelledReader,
        &prompts,
        &settings(2),
    )
    .unwrap();
    for g in &r.groups {
        let c = &g.counts;
        assert_eq!((c.colour_right, c.all_correct), (0, 0), "{g:?}");
        assert_eq!(c.shape_right, c.objects);
        assert_eq!(
            (c.size_right, c.position_right),
            (c.sizes_asked, c.positions_asked)
        );
    }
    // the same with real pictures and the embedded judge
    let judge = embedded_shapes_judge().unwrap();
    let r = evaluate_shapes(&WrongColour, &judge, &one_object_prompts(), &settings(2)).unwrap();
    for g in &r.groups {
        let rates = g.rates;
        assert!(rates.colour.unwrap() <= 0.02, "{g:?}");
        assert!(rates.all_correct.unwrap() <= 0.02, "{g:?}");
        for a in [rates.shape, rates.size, rates.position] {
            assert!(a.unwrap() >= 0.97, "{g:?}");
        }
    }
}

#[test]
fn embedded_judge_agrees_with_the_ground_truth() {
    let judge = embedded_shapes_judge().unwrap();
    let one = one_object_prompts();
    let r = evaluate_shapes(&GroundTruthShapes, &judge, &one, &settings(4)).unwrap();
    let mut all = Tally::default();
    for g in &r.groups {
        all.add(&g.counts);
    }
    assert_eq!(all.pictures, one.len() * 4 * 2);
    let rates = all.rates();
    assert!(rates.all_correct.unwrap() >= 0.99, "{rates:?} {all:?}");
    // two-object prompts, seen and held out
    let two: Vec<Prompt> = seen_prompts()
        .into_iter()
        .chain(held_out_prompt_set())
        .filter(|p| p.objects.len() == 2)
        .collect();
    let s = EvalSettings {
        samples: 3,
        seed: 11,
        rerank: vec![false],
    };
    let r = evaluate_shapes(&GroundTruthShapes, &judge, &two, &s).unwrap();
    for g in &r.groups {
        assert!(g.rates.all_correct.unwrap() >= 0.97, "{g:?}");
    }
}

/// The embedded judge's accuracy (presence of every cell; shape, colour and size of every
/// object) on 400 fresh renders of every combination, placed with `jitter` (small objects
/// with `small_jitter`, where given).
fn judge_accuracy(jitter: f64, small_jitter: Option<f64>) -> (f64, [f64; 3]) {
    // fresh renders of every combination (held-out ones included), not the training seed
    let p = ShapesParams {
        n: 400,
        two_object_fraction: 0.5,
        include_held_out: true,
        jitter,
        small_jitter,
        pair_jitter: None,
    };
    let samples = generate(&p, 0xF4E5).unwrap();
    let judge = embedded_shapes_judge().unwrap();
    let pictures: Vec<Vec<u8>> = samples.iter().map(|s| s.image.clone()).collect();
    let read = judge.read_pictures(&pictures).unwrap();
    let (mut cells, mut presence, mut objects, mut attrs) = (0, 0, 0, [0usize; 3]);
    for (s, r) in samples.iter().zip(&read) {
        for (truth, got) in s.cells().iter().zip(r) {
            cells += 1;
            presence += usize::from(truth.is_some() == got.present);
            if let Some(o) = truth {
                objects += 1;
                attrs[0] += usize::from(o.shape.index() == got.shape);
                attrs[1] += usize::from(o.colour.index() == got.colour);
                attrs[2] += usize::from(o.size.index() == got.size);
            }
        }
    }
    let rate = |k: usize, of: usize| k as f64 / of as f64;
    (rate(presence, cells), attrs.map(|a| rate(a, objects)))
}

#[test]
fn embedded_judge_reads_fresh_renders() {
    let (presence, attrs) = judge_accuracy(0.0, None);
    assert!(presence >= 0.99, "{presence}");
    assert!(attrs.iter().all(|&a| a >= 0.99), "{attrs:?}");
}

#[test]
fn embedded_judge_reads_jittered_renders() {
    // the default prior trains on pictures whose objects sit up to 2 pixels off their cell's
    // centre (`ShapesParams::jitter`), and draws them so: the judge, trained on renders moved
    // up to 2 pixels, reads them as well as the standard placement (the previous judge,
    // trained on the standard placement only, read 21% of large stars moved 2 pixels wrong)
    for (jitter, small_jitter) in [(1.0, None), (2.0, Some(1.0)), (2.0, None)] {
        let (presence, attrs) = judge_accuracy(jitter, small_jitter);
        assert!(presence >= 0.99, "jitter {jitter}: {presence}");
        assert!(
            attrs.iter().all(|&a| a >= 0.99),
            "jitter {jitter}: {attrs:?}"
        );
    }
}

#[test]
fn score_picture_rules() {
    let p = parse_prompt("a small red circle in the top left").unwrap();
    let empty = CellReading {
        present: false,
        shape: 0,
        colour: 0,
        size: 0,
    };
    let red_small_circle = CellReading {
        present: true,
        shape: 0,
        colour: 0,
        size: 0,
    };
    let mut cells = [empty; CELLS];
    // nothing drawn: every attribute wrong
    let v = score_picture(&p.objects, &cells);
    assert_eq!(v.objects[0].position, Some(false));
    assert!(!v.objects[0].shape && !v.objects[0].colour && v.objects[0].size == Some(false));
    assert!(!v.all_correct);
    // drawn in the wrong cell: position wrong, and so the rest (scored in the asked cell)
    cells[4] = red_small_circle;
    let v = score_picture(&p.objects, &cells);
    assert_eq!(v.objects[0].position, Some(false));
    assert_eq!(v.extra_objects, 1);
    // right cell, plus an extra object: attributes right, not all-correct
    cells[0] = red_small_circle;
    let v = score_picture(&p.objects, &cells);
    assert!(v.objects[0].all_right());
    assert_eq!(v.extra_objects, 1);
    assert!(!v.all_correct);
    cells[4] = empty;
    assert!(score_picture(&p.objects, &cells).all_correct);
    // right cell, large instead of small: size only
    cells[0].size = 1;
    let v = score_picture(&p.objects, &cells);
    assert_eq!(v.objects[0].size, Some(false));
    assert!(v.objects[0].shape && v.objects[0].colour && v.objects[0].position == Some(true));
    // open positions: matched to the best cells, whatever their order
    let p = parse_prompt("a blue square and a yellow triangle").unwrap();
    let mut cells = [empty; CELLS];
    cells[2] = CellReading {
        present: true,
        shape: 2,
        colour: 3,
        size: 1,
    };
    cells[7] = CellReading {
        present: true,
        shape: 1,
        colour: 2,
        size: 0,
    };
    let v = score_picture(&p.objects, &cells);
    assert!(v.all_correct, "{v:?}");
    assert_eq!(
        (v.objects[0].cell, v.objects[1].cell, v.objects[0].position),
        (Some(7), Some(2), None)
    );
    // only one of the two drawn
    cells[2] = empty;
    let v = score_picture(&p.objects, &cells);
    assert_eq!((v.objects[0].cell, v.objects[1].cell), (Some(7), None));
    assert!(!v.objects[1].shape && !v.all_correct);
    // only the second drawn: it gets the cell, not the first object
    cells[7] = empty;
    cells[5] = CellReading {
        present: true,
        shape: 2,
        colour: 3,
        size: 0,
    };
    let v = score_picture(&p.objects, &cells);
    assert_eq!((v.objects[0].cell, v.objects[1].cell), (None, Some(5)));
    assert!(v.objects[1].all_right() && !v.all_correct);
}

#[test]
fn prompt_sets_hold_what_they_say() {
    let seen = seen_prompts();
    assert_eq!(seen, seen_prompts(), "fixed list");
    assert_eq!(seen.len(), 2 * SEEN_PER_COUNT);
    for p in &seen {
        assert!(!prompt_is_held_out(p), "{}", p.text);
        for o in &p.objects {
            assert!(!HELD_OUT_SHAPE_COLOUR.contains(&(o.shape, o.colour)));
            if let Some(c) = o.cell {
                assert!(!HELD_OUT_SHAPE_CELL.contains(&(o.shape, c)));
            }
        }
        // the caption states exactly these objects
        assert_eq!(parse_prompt(&p.text).unwrap().objects, p.objects);
    }
    assert_eq!(
        seen.iter().filter(|p| p.objects.len() == 1).count(),
        SEEN_PER_COUNT
    );
    let held = held_out_prompt_set();
    assert_eq!(held, held_out_prompt_set());
    assert_eq!(&held[..32], held_out_prompts().as_slice());
    assert_eq!(held.len(), 64);
    for p in &held {
        assert!(prompt_is_held_out(p), "{}", p.text);
        assert_eq!(parse_prompt(&p.text).unwrap().objects, p.objects);
        // fully specified: the held-out object is one the generator's training set never has
        let full: Vec<ShapeObject> = p
            .objects
            .iter()
            .map(|o| ShapeObject {
                shape: o.shape,
                colour: o.colour,
                size: o.size.unwrap(),
                cell: o.cell.unwrap(),
            })
            .collect();
        assert_eq!(
            full.iter().filter(|o| is_held_out(o)).count(),
            1,
            "{}",
            p.text
        );
        if let [a, b] = full.as_slice() {
            assert_ne!(a.cell, b.cell);
        }
    }
    assert_eq!(held.iter().filter(|p| p.objects.len() == 2).count(), 32);
    // a file's prompts are split by what they use
    let ps =
        parse_prompt_lines("a red star\na red circle in the bottom right\na red circle").unwrap();
    let flags: Vec<bool> = ps.iter().map(prompt_is_held_out).collect();
    assert_eq!(flags, [true, true, false]);
}

#[test]
fn bad_prompt_files_are_clear_errors() {
    let e = parse_prompt_lines("").unwrap_err().to_string();
    assert!(e.contains("holds no prompt"), "{e}");
    let e = parse_prompt_lines("# only a comment\n\n  \n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("holds no prompt"), "{e}");
    let e = parse_prompt_lines("a red circle\na plaid circle\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("line 2") && e.contains("\"plaid\"") && e.contains("vocabulary"),
        "{e}"
    );
    let e = parse_prompt_lines("a red circle and a blue star and a green square")
        .unwrap_err()
        .to_string();
    assert!(e.contains("line 1") && e.contains("1 or 2 objects"), "{e}");
    let e = parse_prompt_lines("a red circle in the center and a blue star in the center")
        .unwrap_err()
        .to_string();
    assert!(e.contains("same cell"), "{e}");
    let e = parse_prompt_lines("a big red").unwrap_err().to_string();
    assert!(e.contains("line 1"), "{e}");
    let e = parse_digit_prompt_lines("the digit 7\na handwritten twelve")
        .unwrap_err()
        .to_string();
    assert!(e.contains("line 2") && e.contains("\"twelve\""), "{e}");
    assert_eq!(
        parse_digit_prompt_lines("the digit 7\n\nthe number two").unwrap(),
        [
            DigitPrompt {
                text: "the digit 7".into(),
                digit: 7
            },
            DigitPrompt {
                text: "the number two".into(),
                digit: 2
            }
        ]
    );
}

#[test]
fn bad_sources_and_settings_are_errors() {
    struct Short;
    impl ImageSource for Short {
        fn dataset(&self) -> &str {
            "shapes"
        }
        fn draw(&self, _: &str, n: usize, _: u64, _: bool) -> Result<Vec<Vec<u8>>> {
            Ok(vec![vec![0u8; 10]; n])
        }
    }
    let judge = embedded_shapes_judge().unwrap();
    let prompts = seen_prompts();
    let e = evaluate_shapes(&Short, &judge, &prompts, &settings(1))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("picture 0 has 10 bytes"), "{e}");
    let e = evaluate(&GroundTruthShapes, &PromptChoice::Seen, &settings(0))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("samples"), "{e}");
    let e = evaluate_digits(
        &GroundTruthShapes,
        &embedded_digits_judge().unwrap(),
        &digit_prompts(),
        &settings(1),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("\"digits\""), "{e}");
}

#[test]
fn same_seed_same_report() {
    let prompts = parse_prompt_lines("a red circle\na small green star in the top right").unwrap();
    let judge = embedded_shapes_judge().unwrap();
    let a = evaluate_shapes(&GroundTruthShapes, &judge, &prompts, &settings(3)).unwrap();
    let b = evaluate_shapes(&GroundTruthShapes, &judge, &prompts, &settings(3)).unwrap();
    assert_eq!(a, b);
    let table = a.table();
    assert!(
        table.contains("all-correct") && table.contains("seen"),
        "{table}"
    );
}

#[test]
fn digit_crop_inverts_the_padding() {
    let mut rng = kiln_core::rng(5);
    use rand::Rng as _;
    for _ in 0..5 {
        let digit: Vec<u8> = (0..28 * 28).map(|_| rng.random()).collect();
        let rgb = to_rgb32(&digit, 28, 28).unwrap();
        assert_eq!(digit_from_rgb32(&rgb).unwrap(), digit);
    }
    // grey is the rounded mean of the three channels
    let mut rgb = vec![0u8; 32 * 32 * 3];
    rgb[(2 * 32 + 2) * 3..(2 * 32 + 2) * 3 + 3].copy_from_slice(&[10, 11, 11]);
    assert_eq!(digit_from_rgb32(&rgb).unwrap()[0], 11);
    let e = digit_from_rgb32(&[0u8; 28 * 28]).unwrap_err().to_string();
    assert!(e.contains("3072") && e.contains("784"), "{e}");
}

fn mnist_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/mnist")
}

/// MNIST test pictures padded to 32×32 RGB as a generator draws them, by digit.
struct MnistDigits {
    by_digit: Vec<Vec<Vec<u8>>>,
}

impl ImageSource for MnistDigits {
    fn dataset(&self) -> &str {
        "digits"
    }

    fn draw(&self, prompt: &str, n: usize, seed: u64, _rerank: bool) -> Result<Vec<Vec<u8>>> {
        let d = kiln_data::captioned_digits::parse_digit_prompt(prompt)?;
        let pool = &self.by_digit[d as usize];
        Ok((0..n)
            .map(|k| pool[(seed as usize * n + k) % pool.len()].clone())
            .collect())
    }
}

#[test]
fn digits_judge_reads_padded_mnist() {
    let m = load_mnist(mnist_dir(), MnistSplit::Test).unwrap();
    let px = m.rows * m.cols;
    let mut by_digit = vec![Vec::new(); 10];
    for (i, &l) in m.labels.iter().enumerate() {
        by_digit[l as usize].push(to_rgb32(&m.images[i * px..(i + 1) * px], 28, 28).unwrap());
    }
    let judge = embedded_digits_judge().unwrap();
    // the whole test split through the crop
    let all: Vec<Vec<u8>> = by_digit.iter().flatten().cloned().collect();
    let labels: Vec<u8> = (0..10u8)
        .flat_map(|d| std::iter::repeat_n(d, by_digit[d as usize].len()))
        .collect();
    let read = judge.read_digits(&all).unwrap();
    let right = read.iter().zip(&labels).filter(|(a, b)| a == b).count();
    let acc = right as f64 / labels.len() as f64;
    assert!(acc >= 0.988, "digits judge on padded MNIST test: {acc}");
    // the benchmark over every digit prompt
    let source = MnistDigits { by_digit };
    let r = evaluate(&source, &PromptChoice::Seen, &settings(5)).unwrap();
    let ImageEvalReport::Digits(r) = r else {
        panic!("digits report expected")
    };
    assert_eq!(r.groups.len(), 2);
    for g in &r.groups {
        assert_eq!(g.pictures, 40 * 5);
        assert!(g.accuracy >= 0.97, "{g:?}");
    }
    let e = evaluate(&source, &PromptChoice::HeldOut, &settings(1))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("no held-out"), "{e}");
    // a source that always draws a one: judged right on the "one" prompts only
    struct Ones(Vec<u8>);
    impl ImageSource for Ones {
        fn dataset(&self) -> &str {
            "digits"
        }
        fn draw(&self, _: &str, n: usize, _: u64, _: bool) -> Result<Vec<Vec<u8>>> {
            Ok(vec![self.0.clone(); n])
        }
    }
    let one = source.by_digit[1][0].clone();
    let r = evaluate_digits(&Ones(one), &judge, &digit_prompts(), &settings(1)).unwrap();
    for g in &r.groups {
        assert_eq!(g.right, 4, "the four prompts asking for a one");
    }
}

#[test]
fn spec_matching_uses_objects() {
    // ObjectSpec sanity for the fake source: the truth matches the prompt
    for p in seen_prompts() {
        let objs = truth(&p.text, 1);
        for (s, o) in p.objects.iter().zip(&objs) {
            assert!(ObjectSpec::matches(s, o));
        }
    }
}

#[test]
fn the_embedded_model_draws_two_fully_described_objects_composed_or_whole() {
    // the 16 seen two-object prompts that describe both objects fully, 4 pictures each, no
    // reranking, drawn composed from their objects' partial captions (the default) and from
    // the whole caption. Measured with this prior: composed colour 100%, size 96.9%, all
    // correct 64.1%; whole 100%, 98.4%, 67.2%. The earlier priors needed composing to bind
    // colours and sizes: the 12,000-step prior drew sizes right 94.5% composed against 85.2%
    // whole (all correct 40.6% against 35.9%), the one before it colours 85.4% against 58.3%;
    // trained 16,000 steps, the whole caption binds them too, and the two ways draw alike
    // (with reranking, over all seen two-object prompts, 68.8% composed against 68.2%
    // whole: the default-image README).
    let judge = embedded_shapes_judge().unwrap();
    let two: Vec<Prompt> = seen_prompts()
        .into_iter()
        .filter(|p| {
            p.objects.len() == 2
                && p.objects
                    .iter()
                    .all(|o| o.size.is_some() && o.cell.is_some())
        })
        .collect();
    assert_eq!(two.len(), 16);
    let s = EvalSettings {
        samples: 4,
        seed: 1,
        rerank: vec![false],
    };
    let rates = |compose| {
        let mut m = kiln_models::text2image::embedded().unwrap();
        let d = m.sampling().clone();
        m.set_sampling(kiln_models::text2image::ImageSampling { compose, ..d })
            .unwrap();
        let r = evaluate_shapes(&m, &judge, &two, &s).unwrap();
        r.groups[0].rates
    };
    for (way, r) in [("composed", rates(true)), ("whole", rates(false))] {
        let (colour, size) = (r.colour.unwrap(), r.size.unwrap());
        let (position, all) = (r.position.unwrap(), r.all_correct.unwrap());
        assert!(
            colour >= 0.95 && size >= 0.9 && position >= 0.95,
            "{way}: {r:?}"
        );
        assert!(all >= 0.5, "{way}: all correct {all} ({r:?})");
    }
}
