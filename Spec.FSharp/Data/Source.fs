namespace SnnSpec.Data

open SnnSpec

/// An in-place, seeded transform of one sample held at data[offset..] (see <c>Augment</c>).
/// The key is derived from the epoch and the sample's index, so results do not depend on batch
/// order, prefetching or thread timing.
type SampleTransform = Rng -> float32[] -> int -> unit

/// Labelled samples a <c>Batcher</c> can copy into its batch buffers without allocating:
/// image sets, integrated event frames, or user data.
type ISampleSource =
    /// Number of samples.
    abstract Count: int
    /// The shape of one sample, e.g. [C; H; W] for images or [T; 2; H; W] for event frames.
    abstract SampleShape: int[]
    /// The class of sample i.
    abstract Label: index: int -> int
    /// Writes sample i (row-major, numel(SampleShape) floats) into dest[offset..].
    abstract CopySample: index: int * dest: float32[] * offset: int -> unit
