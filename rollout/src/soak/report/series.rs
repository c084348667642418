//! The per-second series on disk, streamed as the soak runs: `series.csv` (a line a second), and
//! at the end `series.json` (an array of the same rows, converted from the CSV line by line).

use crate::soak::metrics::SecondRow;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

/// Writes `series.csv` as rows arrive.
#[derive(Debug)]
pub struct SeriesWriter {
    dir: PathBuf,
    csv: BufWriter<File>,
}

impl SeriesWriter {
    /// Creates the directory and `series.csv` with its header.
    pub fn create(dir: &Path) -> std::io::Result<SeriesWriter> {
        std::fs::create_dir_all(dir)?;
        let mut csv = BufWriter::new(File::create(dir.join("series.csv"))?);
        writeln!(csv, "{}", SecondRow::CSV_HEADER)?;
        Ok(SeriesWriter {
            dir: dir.to_owned(),
            csv,
        })
    }

    /// One more second.
    pub fn row(&mut self, row: &SecondRow) -> std::io::Result<()> {
        writeln!(self.csv, "{}", row.csv())?;
        // A line a second: flushing keeps the file useful while the soak runs.
        self.csv.flush()
    }

    /// Flushes the CSV and writes `series.json` from it.
    pub fn finish(mut self) -> std::io::Result<()> {
        self.csv.flush()?;
        let input = BufReader::new(File::open(self.dir.join("series.csv"))?);
        let mut out = BufWriter::new(File::create(self.dir.join("series.json"))?);
        let mut lines = input.lines();
        let header: Vec<String> = match lines.next() {
            Some(h) => h?.split(',').map(str::to_owned).collect(),
            None => Vec::new(),
        };
        out.write_all(b"[")?;
        let mut first = true;
        for line in lines {
            let line = line?;
            let mut obj = serde_json::Map::new();
            for (k, v) in header.iter().zip(line.split(',')) {
                let value = v
                    .parse::<u64>()
                    .map(serde_json::Value::from)
                    .unwrap_or_else(|_| serde_json::Value::from(v));
                obj.insert(k.clone(), value);
            }
            if !first {
                out.write_all(b",")?;
            }
            first = false;
            out.write_all(b"\n")?;
            serde_json::to_writer(&mut out, &obj).map_err(std::io::Error::other)?;
        }
        out.write_all(b"\n]\n")?;
        out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_and_json_hold_the_same_rows() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut w = SeriesWriter::create(dir.path()).expect("create");
        for t in 1..=3 {
            w.row(&SecondRow {
                t,
                phase: "steady".into(),
                refreshes: t * 2,
                ..SecondRow::default()
            })
            .expect("row");
        }
        w.finish().expect("finish");
        let csv = std::fs::read_to_string(dir.path().join("series.csv")).expect("csv");
        assert_eq!(csv.lines().count(), 4);
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("series.json")).expect("json"))
                .expect("parses");
        assert_eq!(json[2]["refreshes"], 6);
        assert_eq!(json[0]["phase"], "steady");
    }
}
