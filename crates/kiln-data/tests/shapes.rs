//! The captioned shapes dataset: determinism, held-out combinations, captions against ground
//! truth, the vocabulary, captioned digits.

use kiln_data::captioned_digits::{
    caption_digit, captioned, digits_vocabulary, parse_digit_prompt, to_rgb32,
};
use kiln_data::idx::Mnist;
use kiln_data::shapes::*;

fn params(n: usize) -> ShapesParams {
    ShapesParams {
        n,
        ..Default::default()
    }
}

#[test]
fn same_seed_same_pictures_other_seed_other_pictures() {
    let a = generate(&params(50), 3).unwrap();
    let b = generate(&params(50), 3).unwrap();
    let c = generate(&params(50), 4).unwrap();
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert!(a
        .iter()
        .all(|s| s.image.len() == IMAGE_SIZE * IMAGE_SIZE * 3));
}

#[test]
fn held_out_combinations_never_appear_in_training() {
    let samples = generate(&params(5000), 11).unwrap();
    let mut seen_pairs = std::collections::HashSet::new();
    for s in &samples {
        for o in &s.objects {
            assert!(!is_held_out(o), "{o:?} in {:?}", s.caption);
            assert!(!HELD_OUT_SHAPE_COLOUR.contains(&(o.shape, o.colour)));
            assert!(!HELD_OUT_SHAPE_CELL.contains(&(o.shape, o.cell)));
            seen_pairs.insert((o.shape, o.colour));
        }
    }
    // asked for, the held-out combinations are drawn too (for the judge)
    let all = generate(
        &ShapesParams {
            n: 3000,
            include_held_out: true,
            ..Default::default()
        },
        11,
    )
    .unwrap();
    assert!(
        all.iter()
            .flat_map(|s| &s.objects)
            .filter(|o| is_held_out(o))
            .count()
            > 100
    );
    // everything else does appear: 4 shapes × 6 colours − 4 held out
    assert_eq!(seen_pairs.len(), 20);
    let held = held_out_prompts();
    assert_eq!(held.len(), 32);
    for p in &held {
        assert_eq!(p.objects.len(), 1);
        let o = p.objects[0];
        let obj = ShapeObject {
            shape: o.shape,
            colour: o.colour,
            size: o.size.unwrap(),
            cell: o.cell.unwrap(),
        };
        assert!(is_held_out(&obj), "{}", p.text);
        // no training caption is a held-out prompt
        assert!(samples.iter().all(|s| s.caption != p.text));
    }
}

#[test]
fn captions_state_the_ground_truth() {
    let samples = generate(&params(2000), 5).unwrap();
    let t = cell_targets(&samples[0].objects);
    let o = samples[0].objects[0];
    assert_eq!(
        t[o.cell.index()],
        [
            1,
            o.shape.index() as u32,
            o.colour.index() as u32,
            o.size.index() as u32
        ]
    );
    assert_eq!(
        t.iter().filter(|c| c[0] == 1).count(),
        samples[0].objects.len()
    );
    let mut two = 0;
    let mut texts = std::collections::HashSet::new();
    for s in &samples {
        assert_eq!(s.caption, s.prompt.text);
        assert_eq!(s.objects.len(), s.prompt.objects.len());
        for (spec, o) in s.prompt.objects.iter().zip(&s.objects) {
            assert!(spec.matches(o), "{spec:?} vs {o:?}");
        }
        // the caption parses back to what it states
        assert_eq!(parse_prompt(&s.caption).unwrap(), s.prompt, "{}", s.caption);
        if s.objects.len() == 2 {
            two += 1;
            assert_ne!(s.objects[0].cell, s.objects[1].cell);
        }
        let words: Vec<String> = Vocabulary::split(&s.caption);
        texts.insert(words[0].clone());
    }
    // about 30% two-object pictures, and several templates in use
    assert!((450..750).contains(&two), "{two}");
    assert!(texts.len() >= 4, "{texts:?}");
}

#[test]
fn pixels_follow_the_ground_truth() {
    // each object's colour is near its cell's centre (a small object moves by at most one
    // pixel); an empty cell's centre is the background
    for s in generate(&params(300), 9).unwrap() {
        let cells = s.cells();
        for cell in Cell::all() {
            let (x, y) = cell.centre();
            let want = match cells[cell.index()] {
                Some(o) => o.colour.rgb(),
                None => s.background.rgb(),
            };
            let best = (-1i32..=1)
                .flat_map(|dy| (-1i32..=1).map(move |dx| (dx, dy)))
                .map(|(dx, dy)| {
                    let i =
                        (((y as i32 + dy) as usize) * IMAGE_SIZE + (x as i32 + dx) as usize) * 3;
                    let px = &s.image[i..i + 3];
                    px.iter()
                        .zip(want)
                        .map(|(&a, b)| (a as i32 - b as i32).abs())
                        .sum::<i32>()
                })
                .min()
                .unwrap();
            assert!(
                best < 30,
                "{} at {}: {want:?} not found",
                s.caption,
                cell.name()
            );
        }
    }
    // a large object covers more pixels than a small one
    let count = |size| {
        let o = ShapeObject {
            shape: ShapeKind::Circle,
            colour: Colour::Red,
            size,
            cell: Cell(4),
        };
        let img = render(&[o], Background::Black, &mut kiln_core::rng(0));
        img.chunks(3).filter(|p| p[0] > 100).count()
    };
    assert!(count(Size::Large) > 2 * count(Size::Small));
}

#[test]
fn render_prompt_fills_open_attributes_and_matches() {
    let p = parse_prompt("a blue square and a yellow triangle").unwrap();
    assert_eq!(p.objects[0].size, None);
    assert_eq!(p.full_objects(), None);
    let full = parse_prompt("a small blue square in the top left").unwrap();
    let want = ShapeObject {
        shape: ShapeKind::Square,
        colour: Colour::Blue,
        size: Size::Small,
        cell: Cell(0),
    };
    assert_eq!(full.full_objects(), Some(vec![want]));
    let s = render_prompt(&p, 1).unwrap();
    assert_eq!(s, render_prompt(&p, 1).unwrap());
    assert!(p.objects.iter().zip(&s.objects).all(|(a, o)| a.matches(o)));
    let clash = parse_prompt("a red circle in the center and a blue star in the center").unwrap();
    let e = render_prompt(&clash, 0).unwrap_err().to_string();
    assert!(e.contains("two objects in the center"), "{e}");
}

#[test]
fn vocabulary_errors_name_unknown_words_and_list_the_vocabulary() {
    let v = Vocabulary::shapes();
    let e = v
        .encode("a plaid circle in the attic")
        .unwrap_err()
        .to_string();
    assert!(e.contains("\"plaid\", \"attic\""), "{e}");
    assert!(
        e.contains("the vocabulary is:") && e.contains("triangle"),
        "{e}"
    );
    assert!(v.encode("   ").unwrap_err().to_string().contains("empty"));
    let ids = v.encode("Top left: a Red circle, small.").unwrap();
    assert_eq!(v.decode(&ids), "top left : a red circle , small");
    assert!(v.encode_padded("a red circle", 2).is_err());
    assert_eq!(v.encode_padded("a red circle", 5).unwrap()[3..], [0, 0]);
    let e = parse_prompt("a red").unwrap_err().to_string();
    assert!(e.contains("does not name a colour and a shape"), "{e}");
    let e = parse_prompt("a red circle in the top center")
        .unwrap_err()
        .to_string();
    assert!(e.contains("\"top center\" is not a position"), "{e}");
    assert!(ShapesParams {
        two_object_fraction: 1.5,
        ..Default::default()
    }
    .validate()
    .unwrap_err()
    .to_string()
    .contains("two_object_fraction"));
}

#[test]
fn captioned_digits() {
    for d in 0..10u8 {
        for t in 0..4 {
            let c = caption_digit(d, t);
            assert_eq!(parse_digit_prompt(&c).unwrap(), d, "{c}");
            digits_vocabulary().encode(&c).unwrap();
        }
    }
    assert_eq!(caption_digit(3, 0), "a handwritten three");
    assert_eq!(caption_digit(3, 1), "the digit 3");
    assert!(parse_digit_prompt("the digit 3 and seven").is_err());
    assert!(parse_digit_prompt("a handwritten")
        .unwrap_err()
        .to_string()
        .contains("names no digit"));
    let m = Mnist {
        images: vec![0; 3 * 4],
        labels: vec![1, 2, 3],
        rows: 2,
        cols: 2,
    };
    let a = captioned(&m, 1);
    assert_eq!(a, captioned(&m, 1));
    assert_eq!(a.iter().map(|c| c.digit).collect::<Vec<_>>(), [1, 2, 3]);
    let img = to_rgb32(&[10, 20, 30, 40], 2, 2).unwrap();
    assert_eq!(img.len(), 32 * 32 * 3);
    assert_eq!(&img[(15 * 32 + 15) * 3..(15 * 32 + 16) * 3], &[10, 10, 10]);
    assert!(to_rgb32(&[1, 2, 3], 2, 2).is_err());
}

/// Centroid (x, y) of the pixels that differ from the background, of a one-object picture.
fn centroid(s: &ShapesSample) -> (f64, f64) {
    let bg = s.background.rgb();
    let (mut sx, mut sy, mut n) = (0.0, 0.0, 0.0);
    for (i, p) in s.image.chunks(3).enumerate() {
        if p != bg {
            sx += (i % IMAGE_SIZE) as f64;
            sy += (i / IMAGE_SIZE) as f64;
            n += 1.0;
        }
    }
    (sx / n, sy / n)
}

#[test]
fn jitter_moves_large_objects_within_the_picture_and_keeps_held_out_out() {
    let jittered = |jitter| ShapesParams {
        n: 600,
        two_object_fraction: 0.0,
        jitter,
        ..Default::default()
    };
    let a = generate(&jittered(2.0), 5).unwrap();
    assert_eq!(a, generate(&jittered(2.0), 5).unwrap());
    assert!(a.iter().flat_map(|s| &s.objects).all(|o| !is_held_out(o)));
    // the spread of a large square's centroid in the center cell: none without jitter
    let spread = |samples: &[ShapesSample]| {
        let xs: Vec<f64> = samples
            .iter()
            .filter(|s| {
                let o = s.objects[0];
                (o.shape, o.size, o.cell) == (ShapeKind::Square, Size::Large, Cell(4))
            })
            .map(|s| centroid(s).0)
            .collect();
        assert!(xs.len() >= 5, "{} large squares in the center", xs.len());
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / xs.len() as f64).sqrt()
    };
    assert!(spread(&a) > 0.5, "{}", spread(&a));
    assert!(spread(&generate(&jittered(0.0), 5).unwrap()) < 1e-9);
    // a large star in a corner cell stays whole: jitter never pushes its points off the picture
    let star = ShapeObject {
        shape: ShapeKind::Star,
        colour: Colour::Green,
        size: Size::Large,
        cell: Cell(0),
    };
    let mut rng = kiln_core::rng(9);
    for _ in 0..20 {
        let img = render_jittered(&[star], Background::Black, 2.0, &mut rng);
        let whole = render_jittered(&[star], Background::Black, 0.0, &mut rng);
        let area = |v: &[u8]| v.chunks(3).map(|p| p[1] as u32).sum::<u32>();
        let (got, want) = (area(&img) as f64, area(&whole) as f64);
        assert!((got - want).abs() < 0.05 * want, "{got} against {want}");
    }
    for bad in [2.5, -0.1, f64::NAN] {
        let e = jittered(bad).validate().unwrap_err().to_string();
        assert!(e.contains("jitter") && e.contains("[0, 2]"), "{e}");
    }
}

#[test]
fn small_jitter_moves_small_objects_less_and_large_ones_as_jitter() {
    let placed = |small_jitter| ShapesParams {
        n: 3000,
        two_object_fraction: 0.0,
        jitter: 2.0,
        small_jitter,
        ..Default::default()
    };
    // the largest distance of a square's centroid in the center cell from their mean, by size
    let reach = |samples: &[ShapesSample], size: Size| {
        let xs: Vec<f64> = samples
            .iter()
            .filter(|s| {
                let o = s.objects[0];
                o.size == size && o.shape == ShapeKind::Square && o.cell == Cell(4)
            })
            .map(|s| centroid(s).0)
            .collect();
        assert!(
            xs.len() >= 10,
            "{} {size:?} squares in the center",
            xs.len()
        );
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        xs.iter().map(|x| (x - mean).abs()).fold(0.0f64, f64::max)
    };
    let both = generate(&placed(None), 5).unwrap();
    let small_less = generate(&placed(Some(0.5)), 5).unwrap();
    assert_eq!(small_less, generate(&placed(Some(0.5)), 5).unwrap());
    // large squares: moved by up to ±2 either way
    let (large, small) = (reach(&both, Size::Large), reach(&both, Size::Small));
    assert!(large > 1.5, "{large}");
    assert!(reach(&small_less, Size::Large) > 1.5);
    // small squares: up to ±2 by default, at most ±0.5 with small_jitter 0.5
    assert!(small > 1.5, "{small}");
    let r = reach(&small_less, Size::Small);
    assert!(
        r < 1.0,
        "a small square moved {r} pixels with small_jitter 0.5"
    );
    // unset, small objects follow jitter: the same pictures as before the option existed
    assert_eq!(
        generate(&placed(Some(2.0)), 5).unwrap(),
        generate(&placed(None), 5).unwrap()
    );
    for bad in [2.5, -0.1, f64::NAN] {
        let e = placed(Some(bad)).validate().unwrap_err().to_string();
        assert!(e.contains("small_jitter") && e.contains("[0, 2]"), "{e}");
    }
}

#[test]
fn pair_jitter_places_the_large_objects_of_two_object_pictures_on_their_own() {
    let p = ShapesParams {
        n: 1500,
        two_object_fraction: 0.5,
        jitter: 2.0,
        pair_jitter: Some(0.0),
        ..Default::default()
    };
    let samples = generate(&p, 8).unwrap();
    assert_eq!(samples, generate(&p, 8).unwrap());
    // two large objects: exactly the standard placement (which moves large objects not at all)
    let both_large: Vec<&ShapesSample> = samples
        .iter()
        .filter(|s| s.objects.len() == 2 && s.objects.iter().all(|o| o.size == Size::Large))
        .collect();
    assert!(both_large.len() >= 20, "{}", both_large.len());
    let mut rng = kiln_core::rng(0);
    for s in both_large {
        assert_eq!(s.image, render(&s.objects, s.background, &mut rng));
    }
    // one large object: still moved by up to ±2 pixels
    let xs: Vec<f64> = samples
        .iter()
        .filter(|s| {
            s.objects.len() == 1
                && (s.objects[0].shape, s.objects[0].size, s.objects[0].cell)
                    == (ShapeKind::Square, Size::Large, Cell(4))
        })
        .map(|s| centroid(s).0)
        .collect();
    let spread =
        xs.iter().cloned().fold(f64::MIN, f64::max) - xs.iter().cloned().fold(f64::MAX, f64::min);
    assert!(
        xs.len() >= 5 && spread > 2.0,
        "{} squares, spread {spread}",
        xs.len()
    );
    let e = ShapesParams {
        pair_jitter: Some(3.0),
        ..p
    }
    .validate()
    .unwrap_err()
    .to_string();
    assert!(e.contains("pair_jitter") && e.contains("[0, 2]"), "{e}");
}
