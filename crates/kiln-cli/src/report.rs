//! A small self-contained HTML report (the tour's `index.html`): chapters of text, tables,
//! preformatted text and images, with no external resources.

use std::path::Path;

use anyhow::{Context, Result};

/// One piece of a chapter.
pub enum Block {
    /// A paragraph of plain text.
    Text(String),
    /// Label/value rows.
    Table(Vec<(String, String)>),
    /// Preformatted text (a report, an export).
    Pre(String),
    /// An image file in the report's folder, with its caption.
    Image {
        /// File name relative to the report.
        src: String,
        /// Caption and alt text.
        caption: String,
    },
}

/// A titled section.
pub struct Chapter {
    /// Heading.
    pub title: String,
    /// Content in order.
    pub blocks: Vec<Block>,
}

/// The whole report.
pub struct Report {
    /// Page title.
    pub title: String,
    /// Sections in order.
    pub chapters: Vec<Chapter>,
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

impl Report {
    /// Render as a standalone HTML page.
    pub fn to_html(&self) -> String {
        let mut h = format!(
            "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
             <title>{t}</title>\n<style>\n\
             body {{ font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; color: #222; }}\n\
             h1 {{ border-bottom: 2px solid #c0392b; padding-bottom: .3rem; }}\n\
             h2 {{ margin-top: 2.5rem; color: #c0392b; }}\n\
             table {{ border-collapse: collapse; margin: 1rem 0; }}\n\
             td {{ border: 1px solid #ddd; padding: .3rem .8rem; font-variant-numeric: tabular-nums; }}\n\
             td:first-child {{ font-weight: 600; background: #f7f7f7; }}\n\
             pre {{ background: #f7f7f7; padding: 1rem; overflow-x: auto; }}\n\
             figure {{ margin: 1rem 0; }} img {{ max-width: 100%; border: 1px solid #ddd; }}\n\
             figcaption {{ color: #555; font-size: .9rem; }}\n\
             </style>\n</head>\n<body>\n<h1>{t}</h1>\n",
            t = escape(&self.title)
        );
        for c in &self.chapters {
            h += &format!("<section>\n<h2>{}</h2>\n", escape(&c.title));
            for b in &c.blocks {
                match b {
                    Block::Text(t) => h += &format!("<p>{}</p>\n", escape(t)),
                    Block::Table(rows) => {
                        h += "<table>\n";
                        for (k, v) in rows {
                            h +=
                                &format!("<tr><td>{}</td><td>{}</td></tr>\n", escape(k), escape(v));
                        }
                        h += "</table>\n";
                    }
                    Block::Pre(t) => h += &format!("<pre>{}</pre>\n", escape(t)),
                    Block::Image { src, caption } => {
                        h += &format!(
                        "<figure><img src=\"{}\" alt=\"{}\"><figcaption>{}</figcaption></figure>\n",
                        escape(src),
                        escape(caption),
                        escape(caption)
                    )
                    }
                }
            }
            h += "</section>\n";
        }
        h += "</body>\n</html>\n";
        h
    }

    /// Write `index.html` into `dir` atomically.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let path = dir.join("index.html");
        kiln_core::folder::write_atomic(&path, self.to_html().as_bytes())
            .with_context(|| format!("cannot write {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_escaped_and_complete() {
        let r = Report {
            title: "t <1>".into(),
            chapters: vec![Chapter {
                title: "c".into(),
                blocks: vec![
                    Block::Text("a & b".into()),
                    Block::Table(vec![("k".into(), "v".into())]),
                    Block::Image {
                        src: "p.png".into(),
                        caption: "pic".into(),
                    },
                ],
            }],
        };
        let h = r.to_html();
        assert!(h.contains("<title>t &lt;1&gt;</title>"));
        assert!(h.contains("<p>a &amp; b</p>"));
        assert!(h.contains("<img src=\"p.png\""));
        assert!(h.ends_with("</html>\n"));
    }
}
