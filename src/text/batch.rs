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

/// Padded batches for sentence tasks: indices grouped by similar length so little compute
/// goes to padding, batch order shuffled from a seed, the last partial batch kept.
pub fn bucket_batches(lengths: &[usize], batch: usize, seed: u64, epoch: usize) -> Vec<Vec<usize>> {
    use rand::seq::SliceRandom;
    use rand::SeedableRng;
    let mut rng = rand::rngs::StdRng::seed_from_u64(
        seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
    );
    let mut idx: Vec<usize> = (0..lengths.len()).collect();
    // Shuffle first so that equal lengths land in different batches each epoch, then a
    // stable sort by length forms the buckets.
    idx.shuffle(&mut rng);
    idx.sort_by_key(|&i| lengths[i]);
    let mut batches: Vec<Vec<usize>> = idx.chunks(batch.max(1)).map(|c| c.to_vec()).collect();
    batches.shuffle(&mut rng);
    batches
}

/// A padded batch: ids `[T, B]` time-major, each sequence's length, and a mask `[T, B]`.
#[derive(Debug, PartialEq)]
pub struct Padded {
    pub ids: Vec<u32>,
    pub lengths: Vec<usize>,
    pub mask: Vec<bool>,
    pub t: usize,
    pub b: usize,
}

pub fn pad(seqs: &[&[u32]], pad_id: u32) -> Padded {
    let b = seqs.len();
    let t = seqs.iter().map(|s| s.len()).max().unwrap_or(0);
    let mut ids = vec![pad_id; t * b];
    let mut mask = vec![false; t * b];
    for (j, s) in seqs.iter().enumerate() {
        for (i, &id) in s.iter().enumerate() {
            ids[i * b + j] = id;
            mask[i * b + j] = true;
        }
    }
    Padded {
        ids,
        lengths: seqs.iter().map(|s| s.len()).collect(),
        mask,
        t,
        b,
    }
}

#[cfg(test)]
mod sentence_tests {
    use super::*;

    #[test]
    fn buckets_cover_everything_once_and_group_lengths() {
        let lengths: Vec<usize> = (0..103).map(|i| (i * 37) % 50 + 1).collect();
        let bs = bucket_batches(&lengths, 10, 7, 1);
        assert_eq!(bs.len(), 11);
        let mut all: Vec<usize> = bs.concat();
        all.sort();
        assert_eq!(all, (0..103).collect::<Vec<_>>());
        let padded: usize = bs
            .iter()
            .map(|b| b.iter().map(|&i| lengths[i]).max().unwrap() * b.len())
            .sum();
        let real: usize = lengths.iter().sum();
        assert!(
            (padded as f64) < 1.15 * real as f64,
            "bucketing wastes {padded} vs {real}"
        );
        assert_eq!(
            bs,
            bucket_batches(&lengths, 10, 7, 1),
            "same seed, same batches"
        );
        assert_ne!(
            bs,
            bucket_batches(&lengths, 10, 7, 2),
            "a new order each epoch"
        );
    }

    #[test]
    fn pad_is_time_major_with_mask() {
        let p = pad(&[&[1, 2, 3], &[4]], 0);
        assert_eq!((p.t, p.b), (3, 2));
        assert_eq!(p.ids, vec![1, 4, 2, 0, 3, 0]);
        assert_eq!(p.mask, vec![true, true, true, false, true, false]);
        assert_eq!(p.lengths, vec![3, 1]);
    }
}
