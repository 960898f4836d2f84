//! SpamAssassin's ImageInfo facts: how many GIF, PNG and JPEG images a message attaches (base64
//! parts of those types) and how many pixels they cover, read from each image's own header
//! (GIF logical screen, PNG IHDR chunk, JPEG start-of-frame), for `image_count` and
//! `pixel_coverage`.
//!
//! moat's own code following `Mail::SpamAssassin::Plugin::ImageInfo` (4.0): an image counts
//! whether or not its size can be read; only a readable size adds to the coverage. Reading
//! stops at the first frame header and never goes past the data; never panics.

/// Image counts and pixel areas by type (`gif`, `png`, `jpeg`).
#[derive(Debug, Clone, Default)]
pub struct ImageFacts {
    counts: [u32; 3],
    areas: [u64; 3],
}

const TYPES: [&str; 3] = ["gif", "png", "jpeg"];

impl ImageFacts {
    /// Takes in a MIME part of type `ctype` (lower-case) with transfer encoding `cte` and
    /// decoded contents `data`.
    pub fn add(&mut self, ctype: &str, cte: &str, data: &[u8]) {
        let Some(sub) = ctype.strip_prefix("image/") else { return };
        let kind = match sub {
            "gif" => 0,
            "png" => 1,
            "jpeg" | "jpg" => 2,
            _ => return,
        };
        if cte != "base64" {
            return;
        }
        self.counts[kind] += 1;
        let size = match kind {
            0 => gif_size(data),
            1 => png_size(data),
            _ => jpeg_size(data),
        };
        if let Some((w, h)) = size.filter(|(w, h)| *w > 0 && *h > 0) {
            self.areas[kind] += u64::from(w) * u64::from(h);
        }
    }

    /// Images of `kind` (`all` for every type); None for a type the plugin does not know.
    pub fn count(&self, kind: &str) -> Option<f64> {
        self.pick(kind, &self.counts.map(u64::from))
    }

    /// Pixels covered by images of `kind`.
    pub fn coverage(&self, kind: &str) -> Option<f64> {
        self.pick(kind, &self.areas)
    }

    fn pick(&self, kind: &str, values: &[u64; 3]) -> Option<f64> {
        if kind == "all" {
            return Some(values.iter().sum::<u64>() as f64);
        }
        TYPES.iter().position(|t| *t == kind).map(|i| values[i] as f64)
    }
}

/// The plugin's `result_check`: value in [MIN, MAX] (no MAX: at least MIN).
pub fn in_range(value: Option<f64>, min: f64, max: Option<f64>) -> bool {
    value.is_some_and(|v| v >= min && max.is_none_or(|max| v <= max))
}

fn gif_size(data: &[u8]) -> Option<(u32, u32)> {
    if !(data.starts_with(b"GIF87a") || data.starts_with(b"GIF89a")) {
        return None;
    }
    let le = |i: usize| Some(u32::from(u16::from_le_bytes([*data.get(i)?, *data.get(i + 1)?])));
    Some((le(6)?, le(8)?))
}

fn png_size(data: &[u8]) -> Option<(u32, u32)> {
    if !data.starts_with(b"\x89PNG\r\n\x1a\n") {
        return None;
    }
    let be32 = |i: usize| data.get(i..i + 4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
    let mut pos = 8;
    while pos < data.len() {
        let len = be32(pos)?;
        let kind = data.get(pos + 4..pos + 8)?;
        pos += 8;
        if kind == b"IEND" {
            return None;
        }
        if kind == b"IHDR" && len == 13 {
            return Some((be32(pos)?, be32(pos + 4)?));
        }
        // The plugin steps over the chunk header only, then reads on from there.
    }
    None
}

fn jpeg_size(data: &[u8]) -> Option<(u32, u32)> {
    if !data.starts_with(&[0xFF, 0xD8]) {
        return None;
    }
    let mut pos = 2;
    loop {
        let (xx, mark) = (*data.get(pos)?, *data.get(pos + 1)?);
        let len = usize::from(u16::from_be_bytes([*data.get(pos + 2)?, *data.get(pos + 3)?]));
        if xx != 0xFF || mark == 0xDA || mark == 0xD9 || len < 2 {
            return None;
        }
        pos += 4;
        let frame = matches!(mark, 0xC0..=0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF);
        if frame {
            let be16 = |i: usize| Some(u32::from(u16::from_be_bytes([*data.get(i)?, *data.get(i + 1)?])));
            let height = be16(pos + 1).unwrap_or(0);
            let width = be16(pos + 3).unwrap_or(0);
            return Some((width, height));
        }
        pos += (len - 2).min(data.len().saturating_sub(pos));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_from_image_headers() {
        assert_eq!(gif_size(b"GIF89a\x10\x00\x20\x00rest"), Some((16, 32)));
        let mut png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR".to_vec();
        png.extend_from_slice(&[0, 0, 1, 0, 0, 0, 0, 200, 8, 2, 0, 0, 0]);
        assert_eq!(png_size(&png), Some((256, 200)));
        let jpeg = [0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x04, 0x00, 0x00, 0xFF, 0xC0, 0x00, 0x11, 0x08, 0x00, 0x64, 0x00, 0xC8];
        assert_eq!(jpeg_size(&jpeg), Some((200, 100)));
        for junk in [&b""[..], b"GIF8", b"\x89PNG\r\n\x1a\n\xff", &[0xFF, 0xD8, 0xFF]] {
            let _ = (gif_size(junk), png_size(junk), jpeg_size(junk));
        }
    }

    #[test]
    fn counts_and_coverage() {
        let mut f = ImageFacts::default();
        f.add("image/gif", "base64", b"GIF89a\x10\x00\x20\x00");
        f.add("image/gif", "base64", b"not a gif");
        f.add("image/png", "7bit", b"");
        assert_eq!(f.count("gif"), Some(2.0));
        assert_eq!(f.count("all"), Some(2.0));
        assert_eq!(f.coverage("gif"), Some(512.0));
        assert!(in_range(f.count("gif"), 2.0, None) && !in_range(f.count("gif"), 1.0, Some(1.0)));
        assert_eq!(f.count("bmp"), None);
    }
}
