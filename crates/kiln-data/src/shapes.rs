//! A procedural, seeded, captioned "shapes" dataset for text-to-image models.
//!
//! Each picture is 32×32 RGB (bytes, rows top to bottom, `r g b` per pixel) on one of
//! [`Background::ALL`], holding one or two objects. An object has a [`ShapeKind`] (circle,
//! square, triangle, star), a [`Colour`] (six), a [`Size`] (small, large) and a [`Cell`] of the
//! 3×3 grid ("top left" … "bottom right", "center"). Objects are drawn with 4×4 supersampling
//! (anti-aliased edges); a small object is nudged by up to one pixel inside its cell.
//!
//! Every [`ShapesSample`] carries its ground truth (the objects) and its caption, and the
//! caption's own statement of the objects ([`Prompt`]): a caption may leave size and position
//! open ("a blue square and a yellow triangle"), and a judge must only score what was asked.
//!
//! ## Held-out combinations
//! [`HELD_OUT_SHAPE_COLOUR`] and [`HELD_OUT_SHAPE_CELL`] are never drawn by [`generate`]: no
//! training picture holds, say, a red star or a circle in the bottom right.
//! [`held_out_prompts`] returns one-object prompts that each use one held-out combination, to
//! measure whether a model composes attributes it learnt apart.
//!
//! ## Captions and vocabulary
//! Captions come from several templates (see [`caption`]); [`Vocabulary::shapes`] holds every
//! word they use (punctuation `:` and `,` are words of their own). [`Vocabulary::encode`]
//! rejects unknown words with an error that names them and lists the vocabulary.
//!
//! ```
//! use kiln_data::shapes::{generate, ShapesParams, Vocabulary};
//! let samples = generate(&ShapesParams { n: 4, ..Default::default() }, 7)?;
//! assert_eq!(samples[0].image.len(), 32 * 32 * 3);
//! let vocab = Vocabulary::shapes();
//! let ids = vocab.encode(&samples[0].caption)?;
//! assert_eq!(vocab.decode(&ids), samples[0].caption.replace(':', " :").replace(',', " ,"));
//! assert!(vocab.encode("a plaid circle").unwrap_err().to_string().contains("\"plaid\""));
//! # Ok::<(), kiln_core::Error>(())
//! ```

use kiln_core::{Error, Result};
use rand::Rng as _;

/// Side of a picture in pixels.
pub const IMAGE_SIZE: usize = 32;

/// An object's outline.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum ShapeKind {
    /// A disc.
    Circle,
    /// An axis-aligned square.
    Square,
    /// An equilateral triangle pointing up.
    Triangle,
    /// A five-pointed star pointing up.
    Star,
}

impl ShapeKind {
    /// Every shape, in class-index order.
    pub const ALL: [ShapeKind; 4] = [
        ShapeKind::Circle,
        ShapeKind::Square,
        ShapeKind::Triangle,
        ShapeKind::Star,
    ];

    /// The caption word.
    pub fn name(self) -> &'static str {
        match self {
            ShapeKind::Circle => "circle",
            ShapeKind::Square => "square",
            ShapeKind::Triangle => "triangle",
            ShapeKind::Star => "star",
        }
    }

    /// Class index (position in [`ShapeKind::ALL`]).
    pub fn index(self) -> usize {
        self as usize
    }
}

/// An object's colour.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Colour {
    /// (220, 40, 40).
    Red,
    /// (40, 180, 60).
    Green,
    /// (50, 90, 235).
    Blue,
    /// (245, 220, 40).
    Yellow,
    /// (155, 60, 205).
    Purple,
    /// (250, 140, 30).
    Orange,
}

impl Colour {
    /// Every colour, in class-index order.
    pub const ALL: [Colour; 6] = [
        Colour::Red,
        Colour::Green,
        Colour::Blue,
        Colour::Yellow,
        Colour::Purple,
        Colour::Orange,
    ];

    /// The caption word.
    pub fn name(self) -> &'static str {
        match self {
            Colour::Red => "red",
            Colour::Green => "green",
            Colour::Blue => "blue",
            Colour::Yellow => "yellow",
            Colour::Purple => "purple",
            Colour::Orange => "orange",
        }
    }

    /// The colour's RGB value.
    pub fn rgb(self) -> [u8; 3] {
        match self {
            Colour::Red => [220, 40, 40],
            Colour::Green => [40, 180, 60],
            Colour::Blue => [50, 90, 235],
            Colour::Yellow => [245, 220, 40],
            Colour::Purple => [155, 60, 205],
            Colour::Orange => [250, 140, 30],
        }
    }

    /// Class index (position in [`Colour::ALL`]).
    pub fn index(self) -> usize {
        self as usize
    }
}

/// An object's size.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Size {
    /// Radius 3 pixels.
    Small,
    /// Radius 5 pixels.
    Large,
}

impl Size {
    /// Both sizes, in class-index order.
    pub const ALL: [Size; 2] = [Size::Small, Size::Large];

    /// The caption word.
    pub fn name(self) -> &'static str {
        match self {
            Size::Small => "small",
            Size::Large => "large",
        }
    }

    /// The radius in pixels of the circle the shape is drawn in.
    pub fn radius(self) -> f64 {
        match self {
            Size::Small => 3.0,
            Size::Large => 5.0,
        }
    }

    /// Class index (position in [`Size::ALL`]).
    pub fn index(self) -> usize {
        self as usize
    }
}

/// A cell of the 3×3 grid, numbered row by row from the top left (0) to the bottom right (8).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct Cell(pub u8);

const CELL_NAMES: [&str; 9] = [
    "top left",
    "top middle",
    "top right",
    "middle left",
    "center",
    "middle right",
    "bottom left",
    "bottom middle",
    "bottom right",
];

impl Cell {
    /// Every cell, in index order.
    pub fn all() -> impl Iterator<Item = Cell> {
        (0..9u8).map(Cell)
    }

    /// The caption words ("top left", "center", ...).
    pub fn name(self) -> &'static str {
        CELL_NAMES[self.index()]
    }

    /// Index 0..9 (row-major); a value above 8 is read as 8.
    pub fn index(self) -> usize {
        (self.0 as usize).min(8)
    }

    /// Pixel coordinates (x, y) of the cell's centre.
    pub fn centre(self) -> (f64, f64) {
        let side = IMAGE_SIZE as f64 / 3.0;
        let (row, col) = (self.index() / 3, self.index() % 3);
        ((col as f64 + 0.5) * side, (row as f64 + 0.5) * side)
    }
}

/// The picture's background colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Background {
    /// (15, 15, 15).
    Black,
    /// (95, 95, 95).
    Grey,
    /// (235, 235, 235).
    White,
}

impl Background {
    /// Every background.
    pub const ALL: [Background; 3] = [Background::Black, Background::Grey, Background::White];

    /// The background's RGB value.
    pub fn rgb(self) -> [u8; 3] {
        match self {
            Background::Black => [15, 15, 15],
            Background::Grey => [95, 95, 95],
            Background::White => [235, 235, 235],
        }
    }
}

/// One object in a picture: its ground truth.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct ShapeObject {
    /// Outline.
    pub shape: ShapeKind,
    /// Colour.
    pub colour: Colour,
    /// Size.
    pub size: Size,
    /// Grid cell.
    pub cell: Cell,
}

/// What a caption says about one object: shape and colour always, size and position when the
/// caption names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct ObjectSpec {
    /// Outline.
    pub shape: ShapeKind,
    /// Colour.
    pub colour: Colour,
    /// Size, if the caption names it.
    pub size: Option<Size>,
    /// Grid cell, if the caption names it.
    pub cell: Option<Cell>,
}

impl ObjectSpec {
    /// True if `object` matches everything this spec states.
    pub fn matches(&self, object: &ShapeObject) -> bool {
        self.shape == object.shape
            && self.colour == object.colour
            && self.size.is_none_or(|s| s == object.size)
            && self.cell.is_none_or(|c| c == object.cell)
    }

    /// The object this spec describes, if it names the size and the cell too.
    pub fn object(&self) -> Option<ShapeObject> {
        Some(ShapeObject {
            shape: self.shape,
            colour: self.colour,
            size: self.size?,
            cell: self.cell?,
        })
    }

    /// The fully specified spec of an object.
    pub fn of(object: &ShapeObject) -> Self {
        Self {
            shape: object.shape,
            colour: object.colour,
            size: Some(object.size),
            cell: Some(object.cell),
        }
    }
}

/// A caption and what it states.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Prompt {
    /// The caption text.
    pub text: String,
    /// The objects it asks for (one or two).
    pub objects: Vec<ObjectSpec>,
}

impl Prompt {
    /// The objects, when the prompt names every object's size and cell too; `None` when it
    /// leaves one open.
    pub fn full_objects(&self) -> Option<Vec<ShapeObject>> {
        self.objects.iter().map(ObjectSpec::object).collect()
    }
}

/// One captioned picture.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ShapesSample {
    /// `32 · 32 · 3` bytes, rows top to bottom, RGB per pixel.
    pub image: Vec<u8>,
    /// Background colour.
    pub background: Background,
    /// The objects drawn (one or two, in different cells): the ground truth.
    pub objects: Vec<ShapeObject>,
    /// The caption.
    pub caption: String,
    /// What the caption states (each spec matches the object at the same position).
    pub prompt: Prompt,
}

impl ShapesSample {
    /// The object in each of the 9 cells, if any.
    pub fn cells(&self) -> [Option<ShapeObject>; 9] {
        cells_of(&self.objects)
    }
}

/// The judge's targets for a list of objects: per cell `[present, shape, colour, size]`
/// (class indices; 0 where the cell is empty).
pub fn cell_targets(objects: &[ShapeObject]) -> [[u32; 4]; 9] {
    cells_of(objects).map(|c| match c {
        Some(o) => [
            1,
            o.shape.index() as u32,
            o.colour.index() as u32,
            o.size.index() as u32,
        ],
        None => [0; 4],
    })
}

/// The object in each of the 9 cells for a list of objects.
pub fn cells_of(objects: &[ShapeObject]) -> [Option<ShapeObject>; 9] {
    let mut out = [None; 9];
    for o in objects {
        out[o.cell.index()] = Some(*o);
    }
    out
}

/// Shape–colour pairs that [`generate`] never draws: red star, yellow circle, purple square,
/// blue triangle.
pub const HELD_OUT_SHAPE_COLOUR: [(ShapeKind, Colour); 4] = [
    (ShapeKind::Star, Colour::Red),
    (ShapeKind::Circle, Colour::Yellow),
    (ShapeKind::Square, Colour::Purple),
    (ShapeKind::Triangle, Colour::Blue),
];

/// Shape–cell pairs that [`generate`] never draws: a circle in the bottom right, a square in
/// the top left, a triangle in the center, a star in the middle left.
pub const HELD_OUT_SHAPE_CELL: [(ShapeKind, Cell); 4] = [
    (ShapeKind::Circle, Cell(8)),
    (ShapeKind::Square, Cell(0)),
    (ShapeKind::Triangle, Cell(4)),
    (ShapeKind::Star, Cell(3)),
];

/// True if the object uses a held-out shape–colour or shape–cell combination.
pub fn is_held_out(o: &ShapeObject) -> bool {
    HELD_OUT_SHAPE_COLOUR.contains(&(o.shape, o.colour))
        || HELD_OUT_SHAPE_CELL.contains(&(o.shape, o.cell))
}

/// Options of [`generate`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct ShapesParams {
    /// Number of pictures (default 1000).
    pub n: usize,
    /// Fraction of pictures with two objects, in [0, 1] (default 0.3).
    pub two_object_fraction: f64,
    /// Also draw the held-out combinations (default false). Only for models that judge
    /// pictures (the judge must read every combination); never for a generator's training set.
    pub include_held_out: bool,
    /// Placement jitter in pixels (default 0: the standard placement, small objects ±1 pixel
    /// and large ones exactly on their cell's centre). Above 0, every object's centre moves by
    /// up to ±`jitter` on each axis, kept inside the picture, so a tokenizer or a prior sees
    /// each shape at every offset from its 4×4 patches and not only at its cells' three. At
    /// most [`MAX_JITTER`], so that an object stays in its cell.
    pub jitter: f64,
    /// Placement jitter of small objects, if not [`ShapesParams::jitter`] (default `None`:
    /// the same), in [0, [`MAX_JITTER`]]. A large object needs ±2 pixels to be seen at every
    /// offset from its 4×4 patches; a small one, a few pixels across, comes out in more
    /// fragments the further it moves, so it can keep a smaller range.
    pub small_jitter: Option<f64>,
    /// Placement jitter of the objects of a two-object picture, if not
    /// [`ShapesParams::jitter`] (default `None`: the same), in [0, [`MAX_JITTER`]]; small
    /// objects keep [`ShapesParams::small_jitter`] where it is given. Two large
    /// objects in neighbouring cells sit 10.67 pixels apart with radii of 5: each moved 2 pixels
    /// towards the other, they overlap, where 1 pixel keeps them nearly apart.
    pub pair_jitter: Option<f64>,
}

/// The largest [`ShapesParams::jitter`].
pub const MAX_JITTER: f64 = 2.0;

impl Default for ShapesParams {
    fn default() -> Self {
        Self {
            n: 1000,
            two_object_fraction: 0.3,
            include_held_out: false,
            jitter: 0.0,
            small_jitter: None,
            pair_jitter: None,
        }
    }
}

impl ShapesParams {
    /// Check every option.
    pub fn validate(&self) -> Result<()> {
        if !(0.0..=1.0).contains(&self.two_object_fraction) {
            return Err(Error::param(
                "two_object_fraction",
                self.two_object_fraction,
                "in [0, 1]",
            ));
        }
        if !(0.0..=MAX_JITTER).contains(&self.jitter) {
            return Err(Error::param("jitter", self.jitter, "in [0, 2] pixels"));
        }
        for (name, j) in [
            ("small_jitter", self.small_jitter),
            ("pair_jitter", self.pair_jitter),
        ] {
            if let Some(j) = j.filter(|j| !(0.0..=MAX_JITTER).contains(j)) {
                return Err(Error::param(name, j, "in [0, 2] pixels"));
            }
        }
        Ok(())
    }
}

fn pick<T: Copy>(items: &[T], rng: &mut kiln_core::Rng) -> T {
    items[rng.random_range(0..items.len())]
}

/// A random object (with no held-out combination unless `held_out`), outside the cells in
/// `taken`.
fn random_object(rng: &mut kiln_core::Rng, taken: &[ShapeObject], held_out: bool) -> ShapeObject {
    loop {
        let o = ShapeObject {
            shape: pick(&ShapeKind::ALL, rng),
            colour: pick(&Colour::ALL, rng),
            size: pick(&Size::ALL, rng),
            cell: Cell(rng.random_range(0..9)),
        };
        let clash = taken
            .iter()
            .any(|t| t.cell == o.cell || (t.shape == o.shape && t.colour == o.colour));
        if (held_out || !is_held_out(&o)) && !clash {
            return o;
        }
    }
}

/// `params.n` training pictures from the generator seeded with `seed`; none holds a held-out
/// combination (unless `params.include_held_out`), and two objects in one picture differ in cell and in (shape, colour).
pub fn generate(params: &ShapesParams, seed: u64) -> Result<Vec<ShapesSample>> {
    params.validate()?;
    let mut rng = kiln_core::rng(seed);
    let mut out = Vec::with_capacity(params.n);
    for _ in 0..params.n {
        let h = params.include_held_out;
        let mut objects = vec![random_object(&mut rng, &[], h)];
        if rng.random::<f64>() < params.two_object_fraction {
            let second = random_object(&mut rng, &objects, h);
            objects.push(second);
        }
        let template = rng.random_range(0..TEMPLATES_ONE.max(TEMPLATES_TWO));
        out.push(sample_with(&objects, template, params, &mut rng));
    }
    Ok(out)
}

/// Render `objects` on a random background, placed with `params`' jitter (see
/// [`ShapesParams::jitter`]), and caption them with `template` (taken modulo the number of
/// templates for that object count).
fn sample_with(
    objects: &[ShapeObject],
    template: usize,
    params: &ShapesParams,
    rng: &mut kiln_core::Rng,
) -> ShapesSample {
    let background = pick(&Background::ALL, rng);
    let jitter = match objects.len() {
        1 => params.jitter,
        _ => params.pair_jitter.unwrap_or(params.jitter),
    };
    let image = render_placed(objects, background, jitter, params.small_jitter, rng);
    let prompt = caption(objects, template);
    ShapesSample {
        image,
        background,
        objects: objects.to_vec(),
        caption: prompt.text.clone(),
        prompt,
    }
}

/// Render `objects` onto `background`; the generator places small objects (±1 pixel).
pub fn render(
    objects: &[ShapeObject],
    background: Background,
    rng: &mut kiln_core::Rng,
) -> Vec<u8> {
    render_jittered(objects, background, 0.0, rng)
}

/// [`render`] with a placement jitter (see [`ShapesParams::jitter`]; 0 is [`render`]).
pub fn render_jittered(
    objects: &[ShapeObject],
    background: Background,
    jitter: f64,
    rng: &mut kiln_core::Rng,
) -> Vec<u8> {
    render_placed(objects, background, jitter, None, rng)
}

/// [`render_jittered`] with small objects moved by up to ±`small_jitter` instead, where given
/// (see [`ShapesParams::small_jitter`]).
pub fn render_placed(
    objects: &[ShapeObject],
    background: Background,
    jitter: f64,
    small_jitter: Option<f64>,
    rng: &mut kiln_core::Rng,
) -> Vec<u8> {
    let mut img: Vec<f64> = background
        .rgb()
        .iter()
        .cycle()
        .take(IMAGE_SIZE * IMAGE_SIZE * 3)
        .map(|&v| v as f64)
        .collect();
    for o in objects {
        let (mut cx, mut cy) = o.cell.centre();
        let r = o.size.radius();
        let jitter = match o.size {
            Size::Small => small_jitter.unwrap_or(jitter),
            Size::Large => jitter,
        };
        if jitter > 0.0 {
            // The star's points reach 1.05 r from its centre: keep the whole shape inside.
            let (lo, hi) = (1.05 * r, IMAGE_SIZE as f64 - 1.05 * r);
            cx = (cx + rng.random_range(-jitter..=jitter)).clamp(lo, hi);
            cy = (cy + rng.random_range(-jitter..=jitter)).clamp(lo, hi);
        } else if o.size == Size::Small {
            cx += rng.random_range(-1.0..=1.0);
            cy += rng.random_range(-1.0..=1.0);
        }
        let rgb = o.colour.rgb();
        let (x0, x1) = (
            (cx - r - 1.0).floor().max(0.0) as usize,
            ((cx + r + 1.0).ceil() as usize).min(IMAGE_SIZE),
        );
        let (y0, y1) = (
            (cy - r - 1.0).floor().max(0.0) as usize,
            ((cy + r + 1.0).ceil() as usize).min(IMAGE_SIZE),
        );
        for y in y0..y1 {
            for x in x0..x1 {
                // 4×4 supersampling: the covered fraction of the pixel.
                let mut hits = 0;
                for sy in 0..4 {
                    for sx in 0..4 {
                        let px = x as f64 + (sx as f64 + 0.5) / 4.0 - cx;
                        let py = y as f64 + (sy as f64 + 0.5) / 4.0 - cy;
                        if inside(o.shape, px / r, py / r) {
                            hits += 1;
                        }
                    }
                }
                if hits > 0 {
                    let a = hits as f64 / 16.0;
                    let i = (y * IMAGE_SIZE + x) * 3;
                    for c in 0..3 {
                        img[i + c] = (1.0 - a) * img[i + c] + a * rgb[c] as f64;
                    }
                }
            }
        }
    }
    img.into_iter()
        .map(|v| v.round().clamp(0.0, 255.0) as u8)
        .collect()
}

/// Is the point (x, y), in units of the radius around the centre (y down), inside the shape?
fn inside(shape: ShapeKind, x: f64, y: f64) -> bool {
    match shape {
        ShapeKind::Circle => x * x + y * y <= 0.92 * 0.92,
        ShapeKind::Square => x.abs() <= 0.8 && y.abs() <= 0.8,
        ShapeKind::Triangle => {
            // apex (0, -1), base corners (±0.95, 0.75)
            in_polygon(&[(0.0, -1.0), (0.95, 0.75), (-0.95, 0.75)], x, y)
        }
        ShapeKind::Star => {
            let mut pts = [(0.0, 0.0); 10];
            for (k, p) in pts.iter_mut().enumerate() {
                let rad = if k % 2 == 0 { 1.05 } else { 0.45 };
                let ang = -std::f64::consts::FRAC_PI_2 + k as f64 * std::f64::consts::PI / 5.0;
                *p = (rad * ang.cos(), rad * ang.sin());
            }
            in_polygon(&pts, x, y)
        }
    }
}

/// Even-odd rule point-in-polygon test.
fn in_polygon(pts: &[(f64, f64)], x: f64, y: f64) -> bool {
    let mut inside = false;
    let mut j = pts.len() - 1;
    for i in 0..pts.len() {
        let (xi, yi) = pts[i];
        let (xj, yj) = pts[j];
        if (yi > y) != (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi {
            inside = !inside;
        }
        j = i;
    }
    inside
}

/// Number of one-object caption templates.
pub const TEMPLATES_ONE: usize = 4;
/// Number of two-object caption templates.
pub const TEMPLATES_TWO: usize = 3;

/// The caption of `objects` (one or two) with template `template` (modulo the count).
///
/// A partial caption: one object of a picture that holds others too, as `and` followed by
/// the object's one-object caption with `template` ("and a small red circle in the top
/// left"). A prior trained on some of these beside the whole captions can draw a prompt of
/// several objects as the product of its objects' partial captions, each guiding its own
/// object (`kiln_models::text2image::Prior::sample_composed`).
pub fn partial_caption(object: &ShapeObject, template: usize) -> String {
    format!(
        "and {}",
        caption(std::slice::from_ref(object), template).text
    )
}

/// One object ([`TEMPLATES_ONE`]): "a small red circle in the top left", "top left: a red
/// circle, small", "there is a large blue star in the center", "a green square, large, at the
/// bottom right" ("an" before "orange"). Two objects ([`TEMPLATES_TWO`]): "a blue square and a yellow triangle" (size
/// and position left open), "a small blue square in the top left and a large yellow triangle in
/// the center", "top left: a blue square, small; center: a yellow triangle, large" (written
/// with `and` in place of `;`).
pub fn caption(objects: &[ShapeObject], template: usize) -> Prompt {
    let full: Vec<ObjectSpec> = objects.iter().map(ObjectSpec::of).collect();
    let d = |o: &ShapeObject| {
        (
            o.size.name(),
            o.colour.name(),
            o.shape.name(),
            o.cell.name(),
        )
    };
    if objects.len() == 1 {
        let (s, c, k, p) = d(&objects[0]);
        let text = match template % TEMPLATES_ONE {
            0 => format!("a {s} {c} {k} in the {p}"),
            1 => format!("{p}: {} {c} {k}, {s}", an(c)),
            2 => format!("there is a {s} {c} {k} in the {p}"),
            _ => format!("{} {c} {k}, {s}, at the {p}", an(c)),
        };
        return Prompt {
            text,
            objects: full,
        };
    }
    let (s1, c1, k1, p1) = d(&objects[0]);
    let (s2, c2, k2, p2) = d(&objects[1]);
    match template % TEMPLATES_TWO {
        0 => Prompt {
            text: format!("{} {c1} {k1} and {} {c2} {k2}", an(c1), an(c2)),
            objects: full
                .iter()
                .map(|o| ObjectSpec {
                    size: None,
                    cell: None,
                    ..*o
                })
                .collect(),
        },
        1 => Prompt {
            text: format!("a {s1} {c1} {k1} in the {p1} and a {s2} {c2} {k2} in the {p2}"),
            objects: full,
        },
        _ => Prompt {
            text: format!(
                "{p1}: {} {c1} {k1}, {s1} and {p2}: {} {c2} {k2}, {s2}",
                an(c1),
                an(c2)
            ),
            objects: full,
        },
    }
}

/// The indefinite article before `word`: "an" before a vowel, else "a".
fn an(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

/// Render a picture of exactly what `prompt` asks for, filling what it leaves open (size,
/// cell, background) from `seed`; a ground-truth render for a prompt (the judge's test set).
pub fn render_prompt(prompt: &Prompt, seed: u64) -> Result<ShapesSample> {
    if prompt.objects.is_empty() || prompt.objects.len() > 2 {
        return Err(Error::InvalidData(format!(
            "a shapes prompt asks for 1 or 2 objects, this one asks for {}",
            prompt.objects.len()
        )));
    }
    let mut rng = kiln_core::rng(seed);
    let mut objects: Vec<ShapeObject> = Vec::new();
    for spec in &prompt.objects {
        let fixed: Vec<Cell> = prompt.objects.iter().filter_map(|o| o.cell).collect();
        let free: Vec<Cell> = Cell::all()
            .filter(|c| !objects.iter().any(|o| o.cell == *c) && !fixed.contains(c))
            .collect();
        let cell = match spec.cell {
            Some(c) => c,
            None => pick(&free, &mut rng),
        };
        if objects.iter().any(|o| o.cell == cell) {
            return Err(Error::InvalidData(format!(
                "prompt {:?} puts two objects in the {}",
                prompt.text,
                cell.name()
            )));
        }
        objects.push(ShapeObject {
            shape: spec.shape,
            colour: spec.colour,
            size: spec.size.unwrap_or_else(|| pick(&Size::ALL, &mut rng)),
            cell,
        });
    }
    let background = pick(&Background::ALL, &mut rng);
    let image = render(&objects, background, &mut rng);
    Ok(ShapesSample {
        image,
        background,
        objects,
        caption: prompt.text.clone(),
        prompt: prompt.clone(),
    })
}

/// One-object prompts (template 0, fully specified) that each use exactly one held-out
/// combination: every held-out shape–colour pair in both sizes in two cells that are not
/// held out for its shape, and every held-out shape–cell pair in both sizes with two colours
/// that are not held out for its shape. 32 prompts, in a fixed order.
pub fn held_out_prompts() -> Vec<Prompt> {
    let mut out = Vec::new();
    for &(shape, colour) in &HELD_OUT_SHAPE_COLOUR {
        let cells = Cell::all()
            .filter(|&c| !HELD_OUT_SHAPE_CELL.contains(&(shape, c)))
            .step_by(4)
            .take(2);
        for cell in cells {
            for size in Size::ALL {
                out.push(caption(
                    &[ShapeObject {
                        shape,
                        colour,
                        size,
                        cell,
                    }],
                    0,
                ));
            }
        }
    }
    for &(shape, cell) in &HELD_OUT_SHAPE_CELL {
        let colours = Colour::ALL
            .into_iter()
            .filter(|&c| !HELD_OUT_SHAPE_COLOUR.contains(&(shape, c)))
            .step_by(2)
            .take(2);
        for colour in colours {
            for size in Size::ALL {
                out.push(caption(
                    &[ShapeObject {
                        shape,
                        colour,
                        size,
                        cell,
                    }],
                    0,
                ));
            }
        }
    }
    out
}

/// A word-level caption vocabulary: id 0 is the padding token `<pad>`, then the words.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Vocabulary {
    words: Vec<String>,
}

/// The padding token (id 0).
pub const PAD: &str = "<pad>";

impl Vocabulary {
    /// A vocabulary of `<pad>` followed by `words` (duplicates and `<pad>` itself dropped).
    pub fn new<S: AsRef<str>>(words: &[S]) -> Self {
        let mut out = vec![PAD.to_string()];
        for w in words {
            let w = w.as_ref().to_lowercase();
            if !out.contains(&w) {
                out.push(w);
            }
        }
        Self { words: out }
    }

    /// Every word of the shapes captions.
    pub fn shapes() -> Self {
        let mut words: Vec<&str> = vec![
            "a", "an", "and", "in", "the", "there", "is", "at", ":", ",", "top", "middle",
            "bottom", "left", "right", "center",
        ];
        words.extend(ShapeKind::ALL.iter().map(|s| s.name()));
        words.extend(Colour::ALL.iter().map(|c| c.name()));
        words.extend(Size::ALL.iter().map(|s| s.name()));
        Self::new(&words)
    }

    /// Number of ids, `<pad>` included.
    pub fn len(&self) -> usize {
        self.words.len()
    }

    /// True if only `<pad>` is present.
    pub fn is_empty(&self) -> bool {
        self.words.len() <= 1
    }

    /// The words, `<pad>` first.
    pub fn words(&self) -> &[String] {
        &self.words
    }

    /// Split a text into words: lower-cased, whitespace-separated, `:`, `,` and `;` each a word
    /// of their own; a final `.` is dropped.
    pub fn split(text: &str) -> Vec<String> {
        let mut spaced = String::with_capacity(text.len() + 8);
        for ch in text.trim().trim_end_matches('.').chars() {
            if matches!(ch, ':' | ',' | ';') {
                spaced.push(' ');
                spaced.push(ch);
                spaced.push(' ');
            } else {
                spaced.extend(ch.to_lowercase());
            }
        }
        spaced.split_whitespace().map(str::to_string).collect()
    }

    /// The ids of `text`'s words; an error names every unknown word and lists the vocabulary.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let words = Self::split(text);
        if words.is_empty() {
            return Err(Error::InvalidData(
                "the prompt is empty: expected a caption such as \"a small red circle in the top left\"".into(),
            ));
        }
        let mut ids = Vec::with_capacity(words.len());
        let mut unknown: Vec<String> = Vec::new();
        for w in &words {
            match self.words.iter().position(|v| v == w && v != PAD) {
                Some(i) => ids.push(i as u32),
                None => {
                    let q = format!("{w:?}");
                    if !unknown.contains(&q) {
                        unknown.push(q);
                    }
                }
            }
        }
        if !unknown.is_empty() {
            return Err(Error::InvalidData(format!(
                "unknown word{} in the prompt: {}; the vocabulary is: {}",
                if unknown.len() > 1 { "s" } else { "" },
                unknown.join(", "),
                self.words[1..].join(" ")
            )));
        }
        Ok(ids)
    }

    /// The words of `ids` joined by spaces (`<pad>` and out-of-range ids skipped).
    pub fn decode(&self, ids: &[u32]) -> String {
        ids.iter()
            .filter(|&&i| i != 0)
            .filter_map(|&i| self.words.get(i as usize))
            .cloned()
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// `encode`, then pad with 0 (or refuse) to exactly `len` ids.
    pub fn encode_padded(&self, text: &str, len: usize) -> Result<Vec<u32>> {
        let mut ids = self.encode(text)?;
        if ids.len() > len {
            return Err(Error::InvalidData(format!(
                "the prompt has {} words, at most {len} fit",
                ids.len()
            )));
        }
        ids.resize(len, 0);
        Ok(ids)
    }
}

/// Parse a shapes caption in any of the templates back into the objects it asks for (the
/// inverse of [`caption`]): "a", "the", "there", "is", "in", "at", ":" and "," are filler,
/// "and" separates objects; each object needs one colour and one shape word and may carry a
/// size and a position ("a"/"an" are interchangeable). Unknown words are an error (see [`Vocabulary::encode`]).
pub fn parse_prompt(text: &str) -> Result<Prompt> {
    Vocabulary::shapes().encode(text)?;
    let words = Vocabulary::split(text);
    let mut objects = Vec::new();
    for part in words.split(|w| w == "and" || w == ";") {
        let mut spec: (Option<ShapeKind>, Option<Colour>, Option<Size>) = (None, None, None);
        let mut pos: Vec<&str> = Vec::new();
        for w in part {
            if let Some(s) = ShapeKind::ALL.iter().find(|s| s.name() == w) {
                spec.0 = Some(*s);
            } else if let Some(c) = Colour::ALL.iter().find(|c| c.name() == w) {
                spec.1 = Some(*c);
            } else if let Some(s) = Size::ALL.iter().find(|s| s.name() == w) {
                spec.2 = Some(*s);
            } else if matches!(
                w.as_str(),
                "top" | "middle" | "bottom" | "left" | "right" | "center"
            ) {
                pos.push(w);
            }
        }
        let cell = if pos.is_empty() {
            None
        } else {
            let name = pos.join(" ");
            match CELL_NAMES.iter().position(|&n| n == name) {
                Some(i) => Some(Cell(i as u8)),
                None => {
                    return Err(Error::InvalidData(format!(
                        "{name:?} is not a position; expected one of: {}",
                        CELL_NAMES.join(", ")
                    )))
                }
            }
        };
        match spec {
            (Some(shape), Some(colour), size) => objects.push(ObjectSpec {
                shape,
                colour,
                size,
                cell,
            }),
            _ => {
                return Err(Error::InvalidData(format!(
                    "{:?} does not name a colour and a shape (e.g. \"a red circle\")",
                    part.join(" ")
                )))
            }
        }
    }
    if objects.len() > 2 {
        return Err(Error::InvalidData(format!(
            "a shapes prompt asks for 1 or 2 objects, {text:?} asks for {}",
            objects.len()
        )));
    }
    Ok(Prompt {
        text: text.to_string(),
        objects,
    })
}

/// Pictures as f32 in [0, 1], channels first: `n · 3 · 32 · 32` values.
pub fn images_chw_f32(images: &[&[u8]]) -> Vec<f32> {
    let hw = IMAGE_SIZE * IMAGE_SIZE;
    let mut out = Vec::with_capacity(images.len() * 3 * hw);
    for img in images {
        for c in 0..3 {
            out.extend((0..hw).map(|p| img.get(p * 3 + c).copied().unwrap_or(0) as f32 / 255.0));
        }
    }
    out
}
