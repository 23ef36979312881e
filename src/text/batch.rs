//! Batching for language-model streams, as PyTorch's word_language_model example
//! (`batchify`, `get_batch`) and Zaremba et al. do it: the token stream is cut into B
//! contiguous columns, then served in windows of T steps in order, so the hidden state
//! can be carried from one window to the next.

/// The stream `[n]` cut into `[n / B, B]` time-major columns (the tail that does not
/// fill a row is dropped).
pub struct Stream {
    pub data: Vec<u32>,
    pub rows: usize,
    pub batch: usize,
}

pub fn batchify(ids: &[u32], batch: usize) -> Stream {
    let rows = ids.len() / batch;
    let mut data = vec![0; rows * batch];
    for b in 0..batch {
        for t in 0..rows {
            data[t * batch + b] = ids[b * rows + t];
        }
    }
    Stream { data, rows, batch }
}

impl Stream {
    /// Window starting at row `i`: inputs `[L, B]` and targets shifted by one `[L, B]`,
    /// with L = min(bptt, rows − 1 − i).
    pub fn window(&self, i: usize, bptt: usize) -> (usize, &[u32], &[u32]) {
        let l = bptt.min(self.rows - 1 - i);
        let b = self.batch;
        (
            l,
            &self.data[i * b..(i + l) * b],
            &self.data[(i + 1) * b..(i + 1 + l) * b],
        )
    }

    /// Start rows of the windows of one pass over the stream.
    pub fn starts(&self, bptt: usize) -> impl Iterator<Item = usize> {
        (0..self.rows.saturating_sub(1)).step_by(bptt.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_and_windows_match_pytorch_example() {
        let ids: Vec<u32> = (0..26).collect();
        let s = batchify(&ids, 4);
        assert_eq!(s.rows, 6);
        // Column b holds ids[b*6 .. b*6+6].
        assert_eq!(&s.data[0..4], &[0, 6, 12, 18]);
        let (l, x, y) = s.window(0, 4);
        assert_eq!(l, 4);
        assert_eq!(&x[4..8], &[1, 7, 13, 19]);
        assert_eq!(&y[0..4], &[1, 7, 13, 19]);
        let (l, _, y) = s.window(4, 4);
        assert_eq!(l, 1);
        assert_eq!(y, &[5, 11, 17, 23]);
        assert_eq!(s.starts(4).collect::<Vec<_>>(), vec![0, 4]);
    }
}
