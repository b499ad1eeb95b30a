//! Megatron-Core's `pipeline_model_parallel_layout` string: which items each pipeline chunk
//! holds. `E` is the embedding, `t` a transformer layer, `m` an MTP module and `L` the loss
//! (output head and cross entropy); `|` ends a chunk, `X*n` and `(…)*n` repeat, commas and
//! spaces are cosmetic. `"Et*3|(tt|)*29,m|L"` is DeepSeek-V3 at PP16 × VPP2: the embedding and
//! three layers, 29 chunks of two layers, the MTP module alone, the loss alone. A chunk may be
//! empty (`"E||t|L"`).

use crate::domain::Segment;

/// Expansions beyond this many items are refused (a layout names each layer once).
const MAX_ITEMS: usize = 1 << 20;

/// The chunks a layout string describes, in order. The items must come in model order
/// (embedding, layers, MTP modules, loss), the embedding and the loss at most once each;
/// whether their counts fit the model and the schedule is the layout's check.
pub fn parse(text: &str) -> Result<Vec<Segment>, String> {
    let mut p = Parser {
        s: text.as_bytes(),
        at: 0,
    };
    let items = p.sequence(0)?;
    let mut chunks = vec![Segment::default()];
    // The rank in model order of the last item seen, if any.
    let mut last_rank: Option<usize> = None;
    for &c in &items {
        let seg = chunks.last_mut().expect("at least one chunk");
        let rank = match c {
            b'|' => {
                chunks.push(Segment::default());
                continue;
            }
            b'E' if last_rank.is_some() => {
                return Err("the embedding `E` twice, or after other items (it comes first)".into())
            }
            b'E' => {
                seg.embedding = true;
                0
            }
            b't' => {
                seg.layers += 1;
                1
            }
            b'm' => {
                seg.mtp += 1;
                2
            }
            _ => {
                if last_rank == Some(3) {
                    return Err("the loss `L` twice".into());
                }
                seg.loss = true;
                3
            }
        };
        if let Some(last) = last_rank.filter(|&l| rank < l) {
            return Err(format!(
                "`{}` after `{}`: items go in model order, E then t then m then L",
                c as char,
                ["E", "t", "m", "L"][last]
            ));
        }
        last_rank = Some(rank);
    }
    Ok(chunks)
}

struct Parser<'a> {
    s: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn error(&self, what: &str) -> String {
        format!("{what} at character {}", self.at + 1)
    }

    fn skip(&mut self) {
        while self
            .s
            .get(self.at)
            .is_some_and(|c| c.is_ascii_whitespace() || *c == b',')
        {
            self.at += 1;
        }
    }

    /// Items up to the end or a closing `)` (left for the caller).
    fn sequence(&mut self, depth: usize) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        loop {
            self.skip();
            let Some(&c) = self.s.get(self.at) else {
                return Ok(out);
            };
            let mut unit = match c {
                b'E' | b't' | b'm' | b'L' | b'|' => {
                    self.at += 1;
                    vec![c]
                }
                b'(' => {
                    self.at += 1;
                    let inner = self.sequence(depth + 1)?;
                    if self.s.get(self.at) != Some(&b')') {
                        return Err(self.error("an unclosed `(`"));
                    }
                    self.at += 1;
                    inner
                }
                b')' if depth > 0 => return Ok(out),
                b')' => return Err(self.error("an unmatched `)`")),
                _ => {
                    return Err(self.error(&format!(
                        "`{}` (expected E, t, m, L, |, a group in parentheses or *n)",
                        c.escape_ascii()
                    )))
                }
            };
            self.skip();
            if self.s.get(self.at) == Some(&b'*') {
                self.at += 1;
                self.skip();
                let start = self.at;
                while self.s.get(self.at).is_some_and(u8::is_ascii_digit) {
                    self.at += 1;
                }
                let n: usize = std::str::from_utf8(&self.s[start..self.at])
                    .ok()
                    .and_then(|d| d.parse().ok())
                    .ok_or_else(|| self.error("a repeat count after `*`"))?;
                if unit.len().saturating_mul(n) > MAX_ITEMS {
                    return Err(self.error(&format!("a repeat beyond {MAX_ITEMS} items")));
                }
                unit = unit.repeat(n);
            }
            out.extend(unit);
            if out.len() > MAX_ITEMS {
                return Err(self.error(&format!("a layout beyond {MAX_ITEMS} items")));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(embedding: bool, layers: u64, mtp: u64, loss: bool) -> Segment {
        Segment {
            embedding,
            layers,
            mtp,
            loss,
        }
    }

    /// Megatron's documented example: DeepSeek-V3 at PP16 × VPP2 (docs/api-guide/
    /// pipeline_parallel_layout.md): 32 chunks, the MTP module and the loss on their own.
    #[test]
    fn megatron_deepseek_layout() {
        let c = parse("Et*3|(tt|)*29,m|L").unwrap();
        assert_eq!(c.len(), 32);
        assert_eq!(c[0], seg(true, 3, 0, false));
        assert!(c[1..30].iter().all(|s| *s == seg(false, 2, 0, false)));
        assert_eq!(c[30], seg(false, 0, 1, false));
        assert_eq!(c[31], seg(false, 0, 0, true));
        assert_eq!(c.iter().map(|s| s.layers).sum::<u64>(), 61);
    }

    #[test]
    fn empty_chunks_nesting_and_spaces() {
        assert_eq!(
            parse("E||t|L").unwrap(),
            vec![
                seg(true, 0, 0, false),
                seg(false, 0, 0, false),
                seg(false, 1, 0, false),
                seg(false, 0, 0, true)
            ]
        );
        let c = parse(" E t * 2 | ((t|)*2 t) * 2 , mL ").unwrap();
        let layers: Vec<u64> = c.iter().map(|s| s.layers).collect();
        assert_eq!(layers, vec![2, 1, 1, 2, 1, 1]);
        assert_eq!(c[5], seg(false, 1, 1, true));
    }

    #[test]
    fn malformed_layouts_say_where() {
        for (text, says) in [
            ("Et|x|L", "`x` (expected E, t, m, L"),
            ("E(t|L", "an unclosed `(`"),
            ("Et)|L", "an unmatched `)`"),
            ("Et*|L", "a repeat count after `*`"),
            ("tE|L", "the embedding `E` twice, or after other items"),
            ("Et|L|t", "`t` after `L`"),
            ("Et|m|t|L", "`t` after `m`"),
            ("Et|L|L", "the loss `L` twice"),
            ("E(t*2048)*1024|L", "a repeat beyond"),
            ("E|E|L", "the embedding `E` twice"),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.contains(says), "{text}: {e}");
        }
        assert!(parse("Et*3|x").unwrap_err().ends_with("at character 6"));
    }
}
