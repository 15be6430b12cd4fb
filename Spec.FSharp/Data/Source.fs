namespace SnnSpec.Data

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
