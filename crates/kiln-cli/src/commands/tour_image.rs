//! The tour's text-to-image chapter: kiln's embedded DALL-E-style shapes model draws a picture
//! for each of a few prompts, some with combinations it saw in training and some held out,
//! and the embedded judge (a CNN trained on ground-truth renders) says what it sees in each.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use kiln_data::shapes::{parse_prompt, Cell, Colour, ObjectSpec, ShapeKind, Size, IMAGE_SIZE};
use kiln_models::image_eval::{embedded_shapes_judge, prompt_is_held_out, score_picture};
use kiln_models::image_eval::{ShapesReader, RERANK_CANDIDATES};
use kiln_models::judge::CellReading;
use kiln_models::text2image::{embedded, ImageSampling};
use kiln_plot::{image_grid, ImageGrid, RgbImage};

use crate::output::print_pairs;
use crate::report::{Block, Chapter};

/// The prompts: the first row uses combinations seen in training, the second held-out ones
/// (a red star, a yellow circle, a square in the top left, a triangle in the center).
pub const PROMPTS: [&str; 8] = [
    "a large green circle in the top right",
    "a small blue star in the center",
    "a large orange triangle in the bottom middle",
    "a large red square in the middle left",
    "a large red star in the top middle",
    "a large yellow circle in the bottom left",
    "a large purple square in the top left",
    "a large green triangle in the center",
];

/// The file the chapter writes in the report folder.
pub const GRID_FILE: &str = "text-to-image.png";

/// What the judge reads in a cell, in caption words ("large red star", or "nothing").
fn reading_words(r: &CellReading) -> String {
    if !r.present {
        return "nothing".into();
    }
    let name = |all: &[&'static str], i: usize| all.get(i).copied().unwrap_or("?");
    let sizes: Vec<&str> = Size::ALL.iter().map(|s| s.name()).collect();
    let colours: Vec<&str> = Colour::ALL.iter().map(|c| c.name()).collect();
    let shapes: Vec<&str> = ShapeKind::ALL.iter().map(|s| s.name()).collect();
    format!(
        "{} {} {}",
        name(&sizes, r.size),
        name(&colours, r.colour),
        name(&shapes, r.shape)
    )
}

/// Chapter `number`: one picture per prompt of [`PROMPTS`] (the best of
/// [`RERANK_CANDIDATES`] by the CLIP reranker, drawn from `seed`), judged.
pub fn image_chapter(number: usize, out: &Path, seed: u64) -> Result<Chapter> {
    let title = format!("{number}. Pictures from sentences, judged");
    super::tour::heading(&title);
    let model = embedded().context("cannot load the embedded text-to-image model")?;
    let judge = embedded_shapes_judge().context("cannot load the embedded shapes judge")?;
    let sampling = ImageSampling {
        n: 1,
        seed,
        rerank: RERANK_CANDIDATES,
        ..model.sampling().clone()
    };
    let t0 = Instant::now();
    let mut pictures = Vec::with_capacity(PROMPTS.len());
    for p in PROMPTS {
        let mut drawn = model
            .generate(p, &sampling)
            .with_context(|| format!("cannot draw {p:?}"))?;
        pictures.push(drawn.remove(0));
    }
    let secs = t0.elapsed().as_secs_f64();
    let readings = judge.read_pictures(&pictures)?;
    let mut rows = Vec::new();
    let mut captions = Vec::new();
    let mut right = [0usize; 2];
    for (p, reading) in PROMPTS.iter().zip(&readings) {
        let prompt = parse_prompt(p)?;
        let held_out = prompt_is_held_out(&prompt);
        let verdict = score_picture(&prompt.objects, reading);
        right[usize::from(held_out)] += usize::from(verdict.all_correct);
        let spec: &ObjectSpec = &prompt.objects[0];
        let cell = spec.cell.unwrap_or(Cell(4)).index();
        let seen = reading_words(&reading[cell]);
        let mark = if verdict.all_correct {
            "right"
        } else {
            "wrong"
        };
        let kind = if held_out { "held out" } else { "seen" };
        captions.push(format!("{p} · judge: {seen} ({mark})"));
        rows.push((
            format!("{p} ({kind})"),
            format!("judge sees {seen} there: {mark}"),
        ));
    }
    print_pairs(&rows);
    println!(
        "{:.1} pictures/s (each the best of {RERANK_CANDIDATES} candidates)",
        PROMPTS.len() as f64 / secs.max(1e-9)
    );
    let grid = ImageGrid {
        images: pictures
            .into_iter()
            .map(|pixels| RgbImage {
                width: IMAGE_SIZE,
                height: IMAGE_SIZE,
                pixels,
            })
            .collect(),
        captions,
        columns: 4,
        scale: 6,
    };
    image_grid(out.join(GRID_FILE), &grid)?;
    Ok(Chapter {
        title,
        blocks: vec![
            Block::Text(format!(
                "kiln's embedded DALL-E-style model turns a sentence into a 32×32 picture: a \
                 transformer prior (a small GPT-2) continues the caption with an 8×8 grid of \
                 image codes, with classifier-free guidance, and a VQ-VAE decoder paints them; \
                 a CLIP-style reranker keeps the best of {RERANK_CANDIDATES} candidates (seed \
                 {seed}). All three were trained by kiln on procedural captioned shapes. The \
                 first row asks for combinations seen in training; the second for \
                 combinations that never appeared (a red star, a yellow circle, a square in \
                 the top left, a triangle in the center). Under each picture is what a judge \
                 (a CNN kiln trained on exact renders) reads in the requested cell. Judged \
                 right: {} of 4 seen, {} of 4 held out. `kiln eval image-model` measures this \
                 on hundreds of pictures.",
                right[0], right[1]
            )),
            Block::Table(rows),
            Block::Image {
                src: GRID_FILE.into(),
                caption: "one picture per prompt; top row seen combinations, bottom row \
                          held-out ones"
                    .into(),
            },
        ],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_row_is_seen_and_second_held_out() {
        for (i, p) in PROMPTS.iter().enumerate() {
            let prompt = parse_prompt(p).unwrap();
            assert_eq!(prompt_is_held_out(&prompt), i >= 4, "{p}");
            assert_eq!(prompt.objects.len(), 1, "{p}");
            assert!(prompt.objects[0].cell.is_some(), "{p}");
        }
    }
}
