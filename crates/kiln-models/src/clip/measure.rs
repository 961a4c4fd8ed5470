//! How good a [`Clip`] is at what a reranker needs, on pictures it did not train on.
//!
//! * [`retrieval`]: cut the pictures and their captions into groups of `batch`; for each
//!   picture, does the best-scoring caption of its group describe it (picture → caption), and
//!   for each caption, does the best-scoring picture fit it (caption → picture). "Exact" counts
//!   only the item's own partner; the main figures accept any partner the caption describes
//!   (two pictures may share a caption such as "a red circle and a blue square").
//! * [`hard_negatives`]: the true caption against the same caption with one [`Attribute`]
//!   changed (colour, shape, size or position of one object; for two objects, their colours
//!   swapped), scored on the true picture (caption side); and the true picture against a
//!   render of the changed objects, scored with the true caption (picture side, what reranking
//!   candidates asks). A pair counts as right only when the true one scores strictly higher.

use candle_core::{Tensor, D as Dim};
use kiln_data::shapes::{
    caption, is_held_out, render, Cell, Colour, Prompt, ShapeKind, ShapeObject, ShapesSample, Size,
    TEMPLATES_ONE, TEMPLATES_TWO,
};
use rand::Rng as _;

use super::Clip;
use kiln_nn::Result;

/// Retrieval accuracies over groups of `batch` pictures.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Retrieval {
    /// Pictures measured.
    pub pictures: usize,
    /// Group size (the last group may be smaller).
    pub batch: usize,
    /// Share of pictures whose best caption in the group describes them.
    pub image_to_text: f64,
    /// Share of captions whose best picture in the group fits them.
    pub text_to_image: f64,
    /// Share of pictures whose best caption is their own.
    pub image_to_text_exact: f64,
    /// Share of captions whose best picture is their own.
    pub text_to_image_exact: f64,
}

/// Retrieval of `n` pictures (`images`: `n · 32 · 32 · 3` bytes) and their `captions` in
/// groups of `batch`; `describes(i, j)` says whether caption `j` describes picture `i`.
pub fn retrieval(
    clip: &Clip,
    images: &[u8],
    captions: &[String],
    batch: usize,
    describes: impl Fn(usize, usize) -> bool,
) -> Result<Retrieval> {
    let n = captions.len();
    let img = clip.embed_pictures(images, n)?; // (n, …)
    let txt = clip.embed_captions(captions)?; // (n, …)
    let batch = batch.max(1);
    let (mut i2t, mut t2i, mut i2t_x, mut t2i_x) = (0usize, 0usize, 0usize, 0usize);
    let mut start = 0;
    while start < n {
        let len = batch.min(n - start);
        let sim = clip.similarity(&img.narrow(0, start, len)?, &txt.narrow(0, start, len)?)?; // (b, b)
        let best_caption: Vec<u32> = sim.argmax(Dim::Minus1)?.to_vec1()?;
        let best_picture: Vec<u32> = sim.argmax(0)?.to_vec1()?;
        for (k, (&c, &p)) in best_caption.iter().zip(&best_picture).enumerate() {
            let (c, p) = (c as usize, p as usize);
            i2t += describes(start + k, start + c) as usize;
            t2i += describes(start + p, start + k) as usize;
            i2t_x += (c == k) as usize;
            t2i_x += (p == k) as usize;
        }
        start += len;
    }
    let r = |a: usize| a as f64 / n.max(1) as f64;
    Ok(Retrieval {
        pictures: n,
        batch,
        image_to_text: r(i2t),
        text_to_image: r(t2i),
        image_to_text_exact: r(i2t_x),
        text_to_image_exact: r(t2i_x),
    })
}

/// True if `prompt` describes exactly the objects `objects` (same count; each object matched
/// by one spec, in either order).
pub fn prompt_fits(prompt: &Prompt, objects: &[ShapeObject]) -> bool {
    let s = &prompt.objects;
    match (s.len(), objects.len()) {
        (1, 1) => s[0].matches(&objects[0]),
        (2, 2) => {
            (s[0].matches(&objects[0]) && s[1].matches(&objects[1]))
                || (s[0].matches(&objects[1]) && s[1].matches(&objects[0]))
        }
        _ => false,
    }
}

/// What a hard negative changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Attribute {
    /// The colour of one object.
    Colour,
    /// The shape of one object.
    Shape,
    /// The size of one object (captions that state sizes).
    Size,
    /// The grid cell of one object (captions that state positions).
    Position,
    /// The colours of two objects swapped (two objects of different shapes and colours).
    Swap,
}

impl Attribute {
    /// Every attribute.
    pub const ALL: [Attribute; 5] = [
        Attribute::Colour,
        Attribute::Shape,
        Attribute::Size,
        Attribute::Position,
        Attribute::Swap,
    ];

    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Attribute::Colour => "colour",
            Attribute::Shape => "shape",
            Attribute::Size => "size",
            Attribute::Position => "position",
            Attribute::Swap => "swap",
        }
    }
}

/// The caption template that wrote `sample.caption`, if any.
pub fn template_of(sample: &ShapesSample) -> Option<usize> {
    let count = if sample.objects.len() == 1 {
        TEMPLATES_ONE
    } else {
        TEMPLATES_TWO
    };
    (0..count).find(|&t| caption(&sample.objects, t).text == sample.caption)
}

/// `objects` with `attribute` changed (one object drawn from `rng`, its new value too), or
/// `None` where the caption `prompt` does not state the attribute or no change fits. A changed
/// object never lands on the other's cell or (shape, colour), and never brings in a held-out
/// combination the original object did not have.
pub fn hard_negative(
    objects: &[ShapeObject],
    prompt: &Prompt,
    attribute: Attribute,
    rng: &mut kiln_core::Rng,
) -> Option<Vec<ShapeObject>> {
    if objects.is_empty() || prompt.objects.len() != objects.len() {
        return None;
    }
    if attribute == Attribute::Swap {
        let [a, b] = objects else { return None };
        if a.shape == b.shape || a.colour == b.colour {
            return None;
        }
        let (a2, b2) = (
            ShapeObject {
                colour: b.colour,
                ..*a
            },
            ShapeObject {
                colour: a.colour,
                ..*b
            },
        );
        let ok = (!is_held_out(&a2) || is_held_out(a)) && (!is_held_out(&b2) || is_held_out(b));
        return ok.then(|| vec![a2, b2]);
    }
    let k = rng.random_range(0..objects.len());
    let old = objects[k];
    let other = objects.get(1 - k.min(1)).filter(|_| objects.len() == 2);
    let candidates: Vec<ShapeObject> = match attribute {
        Attribute::Colour => Colour::ALL
            .iter()
            .map(|&colour| ShapeObject { colour, ..old })
            .collect(),
        Attribute::Shape => ShapeKind::ALL
            .iter()
            .map(|&shape| ShapeObject { shape, ..old })
            .collect(),
        Attribute::Size if prompt.objects[k].size.is_some() => Size::ALL
            .iter()
            .map(|&size| ShapeObject { size, ..old })
            .collect(),
        Attribute::Position if prompt.objects[k].cell.is_some() => Cell::all()
            .map(|cell| ShapeObject { cell, ..old })
            .collect(),
        _ => return None,
    };
    let fits: Vec<ShapeObject> = candidates
        .into_iter()
        .filter(|o| *o != old)
        .filter(|o| !is_held_out(o) || is_held_out(&old))
        .filter(|o| {
            other.is_none_or(|t| t.cell != o.cell && (t.shape, t.colour) != (o.shape, o.colour))
        })
        .collect();
    if fits.is_empty() {
        return None;
    }
    let mut out = objects.to_vec();
    out[k] = fits[rng.random_range(0..fits.len())];
    Some(out)
}

/// A hard-negative caption for `sample` with an attribute drawn from `rng` among those that
/// apply (`None` when none does or the caption's template is unknown): NegCLIP's extra
/// training captions.
pub fn random_hard_negative(sample: &ShapesSample, rng: &mut kiln_core::Rng) -> Option<String> {
    let template = template_of(sample)?;
    let start = rng.random_range(0..Attribute::ALL.len());
    (0..Attribute::ALL.len()).find_map(|i| {
        let a = Attribute::ALL[(start + i) % Attribute::ALL.len()];
        hard_negative(&sample.objects, &sample.prompt, a, rng)
            .map(|objects| caption(&objects, template).text)
    })
}

/// Hard-negative results for one attribute.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct AttributeScore {
    /// What the negatives change.
    pub attribute: Attribute,
    /// Pictures with a negative of this kind.
    pub pairs: usize,
    /// True caption scored strictly above the negative caption, on the true picture.
    pub caption_right: usize,
    /// True picture scored strictly above the negative picture, with the true caption.
    pub picture_right: usize,
    /// `caption_right / pairs`.
    pub caption_accuracy: f64,
    /// `picture_right / pairs`.
    pub picture_accuracy: f64,
}

/// Hard negatives of every [`Attribute`] for each of `samples` (one per attribute that
/// applies; changed objects and the renders of negatives drawn from `seed`).
pub fn hard_negatives(
    clip: &Clip,
    samples: &[ShapesSample],
    seed: u64,
) -> Result<Vec<AttributeScore>> {
    let mut rng = kiln_core::rng(seed);
    // (sample, attribute index, negative caption, negative picture)
    let mut negs: Vec<(usize, usize, String, Vec<u8>)> = Vec::new();
    for (i, s) in samples.iter().enumerate() {
        let Some(template) = template_of(s) else {
            continue;
        };
        for (a, &attr) in Attribute::ALL.iter().enumerate() {
            if let Some(objects) = hard_negative(&s.objects, &s.prompt, attr, &mut rng) {
                let picture = render(&objects, s.background, &mut rng);
                negs.push((i, a, caption(&objects, template).text, picture));
            }
        }
    }
    let mut out: Vec<AttributeScore> = Attribute::ALL
        .iter()
        .map(|&attribute| AttributeScore {
            attribute,
            pairs: 0,
            caption_right: 0,
            picture_right: 0,
            caption_accuracy: 0.0,
            picture_accuracy: 0.0,
        })
        .collect();
    if negs.is_empty() {
        return Ok(out);
    }
    let n = samples.len();
    let images: Vec<u8> = samples
        .iter()
        .flat_map(|s| s.image.iter().copied())
        .collect();
    let captions: Vec<&str> = samples.iter().map(|s| s.caption.as_str()).collect();
    let img = clip.embed_pictures(&images, n)?; // (n, …)
    let txt = clip.embed_captions(&captions)?; // (n, …)
    let neg_captions: Vec<&str> = negs.iter().map(|x| x.2.as_str()).collect();
    let neg_images: Vec<u8> = negs.iter().flat_map(|x| x.3.iter().copied()).collect();
    let neg_txt = clip.embed_captions(&neg_captions)?; // (k, …)
    let neg_img = clip.embed_pictures(&neg_images, negs.len())?; // (k, …)

    // each negative's true pair, the negative caption on the true picture and the true
    // caption on the negative picture, each (k)
    let of = Tensor::from_vec(
        negs.iter().map(|x| x.0 as u32).collect::<Vec<_>>(),
        negs.len(),
        img.device(),
    )?;
    let (img, txt) = (img.index_select(&of, 0)?, txt.index_select(&of, 0)?);
    let truth: Vec<f32> = clip.pair_similarity(&img, &txt)?.to_vec1()?;
    let neg_caption: Vec<f32> = clip.pair_similarity(&img, &neg_txt)?.to_vec1()?;
    let neg_picture: Vec<f32> = clip.pair_similarity(&neg_img, &txt)?.to_vec1()?;
    for (k, (_, a, _, _)) in negs.iter().enumerate() {
        let o = &mut out[*a];
        o.pairs += 1;
        o.caption_right += (truth[k] > neg_caption[k]) as usize;
        o.picture_right += (truth[k] > neg_picture[k]) as usize;
    }
    for o in &mut out {
        o.caption_accuracy = o.caption_right as f64 / o.pairs.max(1) as f64;
        o.picture_accuracy = o.picture_right as f64 / o.pairs.max(1) as f64;
    }
    Ok(out)
}
