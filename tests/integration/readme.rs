//! README's example blocks are what the binary prints: every line `$ trainsim ARGS` (or
//! `$ cargo run --release -- ARGS`) inside a fenced block is run, and its standard output must
//! equal the lines that follow it, up to the next command or the end of the block. Regenerate a
//! block by running its commands from the repository root.

use crate::{fresh_dir, trainsim};

/// Each example command in `text`, with the output the README shows for it.
fn examples(text: &str) -> Vec<(Vec<String>, String)> {
    let mut out: Vec<(Vec<String>, String)> = Vec::new();
    let mut in_block = false;
    let mut current: Option<usize> = None;
    for line in text.lines() {
        if line.starts_with("```") {
            in_block = !in_block;
            current = None;
            continue;
        }
        if !in_block {
            continue;
        }
        let cmd = line
            .strip_prefix("$ trainsim ")
            .or_else(|| line.strip_prefix("$ cargo run --release -- "));
        match (cmd, current) {
            (Some(args), _) => {
                out.push((
                    args.split_whitespace().map(str::to_string).collect(),
                    String::new(),
                ));
                current = Some(out.len() - 1);
            }
            (None, Some(i)) => {
                out[i].1.push_str(line);
                out[i].1.push('\n');
            }
            (None, None) => {}
        }
    }
    out
}

#[test]
fn readme_examples_are_what_the_binary_prints() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let found = examples(&readme);
    assert!(
        found
            .iter()
            .any(|(a, _)| a.first().map(String::as_str) == Some("run")),
        "README shows the main run's output"
    );
    for (k, (args, shown)) in found.iter().enumerate() {
        let mut argv: Vec<String> = args.clone();
        if argv.first().map(String::as_str) == Some("run") {
            // The same output; the files go to a scratch directory, not results/.
            let dir = fresh_dir(&format!("readme-example-{k}"));
            argv.push("--out".into());
            argv.push(dir.display().to_string());
        }
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let o = trainsim(&argv);
        assert_eq!(o.code, 0, "`trainsim {}`: {}", args.join(" "), o.stderr);
        assert_eq!(
            &o.stdout,
            shown,
            "README's example of `trainsim {}` is stale: rerun it and paste its output",
            args.join(" ")
        );
    }
}

/// The parser finds each command and only its own lines.
#[test]
fn examples_split_blocks_by_command() {
    let text = "intro\n```\n$ trainsim a b\none\ntwo\n$ cargo run --release -- c\nthree\n```\n\
                ```yaml\nnot: a command\n```\n";
    let got = examples(text);
    assert_eq!(
        got,
        vec![
            (vec!["a".into(), "b".into()], "one\ntwo\n".into()),
            (vec!["c".into()], "three\n".into()),
        ]
    );
}

/// The counts README's "Accuracy" states are what `validate` prints now: the number of cases,
/// how many are in the quick set, the gating pass count, the validation-only mean error with
/// its worst case, and the calibration points.
#[test]
fn readme_accuracy_counts_are_what_validate_prints() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .unwrap()
        .replace('\n', " ")
        .replace("  ", " ");
    let full = trainsim(&["validate", "--quiet"]);
    assert_eq!(full.code, 0, "{}", full.stderr);
    let line = full
        .stdout
        .lines()
        .find(|l| l.contains("gating validation cases pass"))
        .expect("the pass line");
    // "124 of 124 gating validation cases pass; 33 of 33 calibration points reproduce; 188 cases in all."
    let n: Vec<&str> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .collect();
    let (pass, gating, cal_ok, cal, all) = (n[0], n[1], n[2], n[3], n[4]);
    let row = full
        .stdout
        .lines()
        .find(|l| l.starts_with("| gating |"))
        .expect("the gating MAPE row");
    // "| gating | 124 | 4.1% | mcore-h100-70b (-14.4%) |"
    let cells: Vec<&str> = row.split('|').map(str::trim).collect();
    let mape = cells[3];
    let worst = cells[4]
        .split('(')
        .nth(1)
        .unwrap()
        .trim_end_matches(')')
        .replace('-', "−");
    let quick = trainsim(&["validate", "--quick", "--json"]);
    let q: serde_json::Value = serde_json::from_str(&quick.stdout).unwrap();
    let quick_n = q["cases"].as_array().unwrap().len();
    let all_n: usize = all.parse().unwrap();
    let quick_words = match all_n - quick_n {
        0 => "all are in the quick set".to_string(),
        1 => "all but one are in the quick set".to_string(),
        k => format!("all but {k} are in the quick set"),
    };
    for want in [
        format!("The full set ({all} cases; {quick_words})"),
        format!(
            "today {pass} of {gating} gating validation cases pass at {mape} (worst {worst}), and {cal_ok} of {cal} calibration points reproduce"
        ),
    ] {
        assert!(
            readme.contains(&want),
            "README's Accuracy section does not say \"{want}\": update it from `trainsim validate`"
        );
    }
}
