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

/// The samples of a source at given indices, in that order (a view: nothing is copied).
[<Sealed>]
type SubsetSource(source: ISampleSource, indices: int[]) =
    do
        for i in indices do
            if i < 0 || i >= source.Count then
                Errors.invalidArg "SampleSource.subset" "indices" i (sprintf "an index in [0, %d)" source.Count)

    /// The underlying source.
    member _.Source = source

    interface ISampleSource with
        member _.Count = indices.Length
        member _.SampleShape = source.SampleShape
        member _.Label i = source.Label indices[i]

        member _.CopySample(i, dest, offset) =
            source.CopySample(indices[i], dest, offset)

module SampleSource =
    /// The samples at <c>indices</c>, in that order, as a view of the source.
    let subset (source: ISampleSource) (indices: int[]) : ISampleSource = SubsetSource(source, indices)

    /// The first <c>n</c> samples (the source itself when it has no more than n).
    let take (n: int) (source: ISampleSource) : ISampleSource =
        if n >= source.Count then
            source
        else
            subset source [| 0 .. n - 1 |]

    /// The samples at <c>indices</c> as one tensor: [n, …SampleShape], or with <c>timeMajor</c> the
    /// sequence layout [T, n, …] of sequence samples [T, …] (allocates; batching reuses buffers instead).
    let toTensor (timeMajor: bool) (source: ISampleSource) (indices: int[]) =
        let shape = source.SampleShape
        let per = Shape.numel shape
        let one = Array.zeroCreate<float32> per
        let n = indices.Length
        let data = Array.zeroCreate<float32>(n * per)

        if timeMajor then
            if shape.Length < 2 then
                Errors.invalidArg
                    "SampleSource.toTensor"
                    "timeMajor"
                    (Errors.showShape shape)
                    "sequence samples [T, …] (at least two axes)"

            let steps = shape[0]
            let step = per / steps

            indices
            |> Array.iteri (fun j i ->
                source.CopySample(i, one, 0)

                for t in 0 .. steps - 1 do
                    System.Array.Copy(one, t * step, data, (t * n + j) * step, step))

            Tensor.ofArray (Array.concat [ [| steps; n |]; shape[1..] ]) data
        else
            indices |> Array.iteri (fun j i -> source.CopySample(i, data, j * per))
            Tensor.ofArray (Array.append [| n |] shape) data
