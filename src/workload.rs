//! Synthetic workloads: a Zipf-distributed stream of object ids, as the demo and
//! `strata-tools replay` send them.

use rand::Rng;

/// Samples ids in `0..n` with probability proportional to `1 / (rank + 1)^s`.
pub struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    pub fn new(n: u64, s: f64) -> Zipf {
        let n = n.max(1) as usize;
        let mut cdf = Vec::with_capacity(n);
        let mut sum = 0.0;
        for i in 0..n {
            sum += 1.0 / ((i + 1) as f64).powf(s);
            cdf.push(sum);
        }
        for c in &mut cdf {
            *c /= sum;
        }
        Zipf { cdf }
    }

    pub fn sample(&self, rng: &mut impl Rng) -> u64 {
        let u: f64 = rng.random();
        self.cdf.partition_point(|c| *c < u).min(self.cdf.len() - 1) as u64
    }
}

/// The size in bytes of sample object `id`: log-uniform between 1 KiB and 16 KiB, fixed per id.
pub fn object_size(id: u64) -> usize {
    let h = xxhash_rust::xxh3::xxh3_64(&id.to_le_bytes());
    let f = (h % 10_000) as f64 / 10_000.0;
    (1024.0 * 16f64.powf(f)) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipf_prefers_low_ranks() {
        let z = Zipf::new(1000, 0.9);
        let mut rng = rand::rng();
        let mut counts = [0u32; 1000];
        for _ in 0..20_000 {
            counts[z.sample(&mut rng) as usize] += 1;
        }
        assert!(counts[0] > counts[10] && counts[10] > counts[500]);
        assert!((1024..=16 * 1024).contains(&object_size(7)));
    }
}
