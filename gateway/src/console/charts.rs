//! The dashboard's charts, drawn by `plotters` into SVG on the server.
//!
//! The pages run no script, so a browser-side chart library would need
//! `script-src` and a vendored bundle; `plotters` with only its SVG backend
//! adds three small crates and no font or image stack. Its SVG carries
//! presentation attributes only (never `style=`), which the strict
//! Content-Security-Policy allows, and it escapes the labels it writes.
//! Each chart is labelled (`role="img"`, `<title>`, `<desc>`) and its
//! numbers are in a table beside it; colours, axis lines and text follow
//! the page's colour scheme through the stylesheet.

use plotters::{
    coord::ranged1d::{IntoSegmentedCoord, SegmentValue},
    element::EmptyElement,
    prelude::*,
    style::text_anchor::{HPos, Pos, VPos},
};

use super::{
    dashboard::{Count, Day},
    error::ConsoleError,
};

/// The daily chart's size, in SVG user units.
const DAILY: (u32, u32) = (720, 220);
/// A ranked chart's width, its labels' part of it, and the height of each
/// of its rows: about the width of its column on the page, so its text
/// shows at the page's size.
const RANKED_W: u32 = 380;
const LABEL_W: u32 = 180;
const ROW_H: u32 = 24;
/// Characters of a label the ranked chart shows; the table has the rest.
const LABEL_CHARS: usize = 22;
/// Text size; plotters writes 1/1.24 of it into the SVG (13px).
const FONT: f64 = 16.0;
/// All requests, and the denied part of them: both at least 3:1 against
/// the light and the dark page background (WCAG 1.4.11).
const ALL: RGBColor = RGBColor(0x3b, 0x6f, 0xc0);
const DENIED: RGBColor = RGBColor(0xd0, 0x31, 0x2d);

/// Requests per day with the denied part in front of them.
pub(super) fn daily(days: &[Day], title: &str, desc: &str) -> Result<String, ConsoleError> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, DAILY).into_drawing_area();
        let n = u32::try_from(days.len()).unwrap_or(u32::MAX).max(1);
        let top = nice_top(days.iter().map(|d| d.total).max().unwrap_or(0));
        let mut chart = ChartBuilder::on(&root)
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(44)
            .build_cartesian_2d((0..n).into_segmented(), 0u64..top)
            .map_err(draw_error)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .disable_y_mesh()
            .x_labels(6)
            .y_labels(5)
            .x_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => usize::try_from(*i)
                    .ok()
                    .and_then(|i| days.get(i))
                    .map(|d| d.date.get(5..).unwrap_or(&d.date).to_owned())
                    .unwrap_or_default(),
                SegmentValue::Last => String::new(),
            })
            .label_style(("sans-serif", FONT))
            .draw()
            .map_err(draw_error)?;
        for (colour, value) in [
            (ALL, (|d: &Day| d.total) as fn(&Day) -> u64),
            (DENIED, |d: &Day| d.denied),
        ] {
            chart
                .draw_series(
                    (0u32..)
                        .zip(days)
                        .filter(|(_, d)| value(d) > 0)
                        .map(|(i, d)| {
                            let mut bar = Rectangle::new(
                                [
                                    (SegmentValue::Exact(i), 0),
                                    (SegmentValue::Exact(i + 1), value(d)),
                                ],
                                colour.filled(),
                            );
                            bar.set_margin(0, 0, 2, 2);
                            bar
                        }),
                )
                .map_err(draw_error)?;
        }
        root.present().map_err(draw_error)?;
    }
    Ok(accessible(svg, "daily", title, desc))
}

/// One bar per row, largest first from the top, each labelled at its
/// left and with its number past its end, so the two never overlap.
pub(super) fn ranked(id: &str, rows: &[Count], title: &str) -> Result<String, ConsoleError> {
    let mut svg = String::new();
    let n = u32::try_from(rows.len()).unwrap_or(u32::MAX).max(1);
    {
        let size = (RANKED_W, n.saturating_mul(ROW_H).saturating_add(8));
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        let max = rows.iter().map(|c| c.count).max().unwrap_or(0).max(1);
        // Room past the longest bar for its number.
        let right = max.saturating_add(max / 3).saturating_add(1);
        let (label_area, _) = root.split_horizontally(LABEL_W);
        let plot = root.margin(4, 4, LABEL_W, 4);
        let mut chart = ChartBuilder::on(&plot)
            .build_cartesian_2d(0u64..right, 0f64..f64::from(n))
            .map_err(draw_error)?;
        let font = ("sans-serif", FONT).into_font();
        let label = TextStyle::from(font.clone()).pos(Pos::new(HPos::Right, VPos::Center));
        let number = TextStyle::from(font).pos(Pos::new(HPos::Left, VPos::Center));
        // Row 0 at the top.
        let middle = |i: u32| f64::from(n - i) - 0.5;
        chart
            .draw_series((0u32..).zip(rows).map(|(i, c)| {
                Rectangle::new(
                    [(0, middle(i) - 0.32), (c.count, middle(i) + 0.32)],
                    ALL.filled(),
                )
            }))
            .map_err(draw_error)?;
        chart
            .draw_series((0u32..).zip(rows).map(|(i, c)| {
                EmptyElement::at((c.count, middle(i)))
                    + Text::new(c.count.to_string(), (4, 0), number.clone())
            }))
            .map_err(draw_error)?;
        for (i, c) in (0u32..).zip(rows) {
            let y = i32::try_from(i.saturating_mul(ROW_H) + ROW_H / 2 + 4).unwrap_or(i32::MAX);
            label_area
                .draw(&Text::new(
                    shorten(&c.label),
                    (i32::try_from(LABEL_W).unwrap_or(0) - 6, y),
                    label.clone(),
                ))
                .map_err(draw_error)?;
        }
        root.present().map_err(draw_error)?;
    }
    Ok(accessible(
        svg,
        id,
        title,
        "The same numbers are in the table beside the chart.",
    ))
}

/// Names the chart for assistive technology: `role="img"` with its title
/// and description, and a class the stylesheet sizes and colours it by.
/// The fixed width and height go, so the chart scales with the page.
fn accessible(svg: String, id: &str, title: &str, desc: &str) -> String {
    let Some(open_end) = svg.find('>') else {
        return svg;
    };
    let (open, rest) = svg.split_at(open_end);
    let attrs: String = open
        .trim_start_matches("<svg")
        .split(' ')
        .filter(|a| !a.starts_with("width=") && !a.starts_with("height="))
        .collect::<Vec<_>>()
        .join(" ");
    let rest = rest.get(1..).unwrap_or_default();
    format!(
        "<svg{attrs} class=\"chart\" role=\"img\" aria-labelledby=\"{id}-title {id}-desc\" focusable=\"false\">\n<title id=\"{id}-title\">{}</title>\n<desc id=\"{id}-desc\">{}</desc>{rest}",
        escape(title),
        escape(desc)
    )
}

/// A round number at or above `max`, so the axis reads 0, 5, 10 … rather
/// than 0, 7, 14 ….
fn nice_top(max: u64) -> u64 {
    let max = max.max(1);
    let mut step = 1u64;
    while step.saturating_mul(10) <= max {
        step = step.saturating_mul(10);
    }
    let top = max.div_ceil(step).saturating_mul(step);
    if top == max {
        top.saturating_add(step)
    } else {
        top
    }
}

fn shorten(label: &str) -> String {
    if label.chars().count() <= LABEL_CHARS {
        label.to_owned()
    } else {
        let mut s: String = label.chars().take(LABEL_CHARS - 1).collect();
        s.push('…');
        s
    }
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}

fn draw_error(e: impl std::fmt::Display) -> ConsoleError {
    ConsoleError::internal(format!("a chart could not be drawn: {e}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    fn count(label: &str, count: u64) -> Count {
        Count {
            label: label.into(),
            count,
        }
    }

    #[test]
    fn a_ranked_chart_is_labelled_escaped_and_has_no_inline_style() {
        let svg = ranked(
            "denials",
            &[
                count("PURPOSE_NOT_PERMITTED", 9),
                count("<script>alert(1)</script>", 2),
            ],
            "Denials by reason",
        )
        .unwrap();
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.contains(r#"role="img" aria-labelledby="denials-title denials-desc""#));
        assert!(svg.contains(r#"<title id="denials-title">Denials by reason</title>"#));
        assert!(svg.contains("PURPOSE_NOT_PERMITTED"));
        assert!(svg.contains("&lt;script&gt;"));
        assert!(!svg.contains("<script"));
        assert!(!svg.contains("style="));
        assert!(!svg.contains(" width=\"380\""));
        // Each number is drawn to the right of its bar's end, not on it.
        assert_eq!(svg.matches("<rect").count(), 2, "{svg}");
        let attr = |tag: &str, name: &str| -> f64 {
            let at = tag.find(&format!(" {name}=\"")).unwrap() + name.len() + 3;
            tag[at..].split('"').next().unwrap().parse().unwrap()
        };
        let bar = svg.split("<rect").nth(1).unwrap();
        let end = attr(bar, "x") + attr(bar, "width");
        let nine = svg
            .split("<text")
            .find(|t| t.contains(">\n9\n</text>"))
            .unwrap();
        assert!(attr(nine, "x") > end, "{svg}");
        assert!((attr(nine, "y") - (attr(bar, "y") + attr(bar, "height") / 2.0)).abs() <= 1.0);
    }

    #[test]
    fn the_daily_chart_draws_a_bar_per_busy_day_and_its_denials() {
        let day = |date: &str, total, denied| Day {
            date: date.into(),
            total,
            denied,
        };
        let svg = daily(
            &[
                day("2026-03-01", 4, 1),
                day("2026-03-02", 0, 0),
                day("2026-03-03", 7, 0),
            ],
            "Requests per day",
            "Blue all, red denied",
        )
        .unwrap();
        // Two days with requests and one with a denial.
        let fills = |hex: &str| svg.matches(&format!("fill=\"{hex}\"")).count();
        assert_eq!(fills("#3B6FC0"), 2, "{svg}");
        assert_eq!(fills("#D0312D"), 1, "{svg}");
        assert!(svg.contains("<desc id=\"daily-desc\">Blue all, red denied</desc>"));
    }

    #[test]
    fn axis_tops_are_round() {
        assert_eq!(nice_top(0), 2);
        assert_eq!(nice_top(7), 8);
        assert_eq!(nice_top(10), 20);
        assert_eq!(nice_top(68), 70);
        assert_eq!(nice_top(1234), 2000);
    }
}
