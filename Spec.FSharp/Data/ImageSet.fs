namespace SnnSpec.Data

open System
open SnnSpec

/// A labelled image set held compactly: <c>Pixels</c> is uint8, sample-major [N, C, H, W]
/// (channel planes, rows top to bottom); <c>Labels</c>[i] ∈ [0, Classes). Samples become float32
/// in [0, 1] (value / 255) only when copied into a batch.
type ImageSet =
    {
        Name: string
        Pixels: byte[]
        Labels: int[]
        Channels: int
        Height: int
        Width: int
        Classes: int
    }

    /// Number of samples.
    member s.Count = s.Labels.Length
    /// Bytes (= floats once converted) per sample: C·H·W.
    member s.SampleSize = s.Channels * s.Height * s.Width

    /// Samples as float32 [C, H, W] with values in [0, 1] (pixel / 255).
    interface ISampleSource with
        member s.Count = s.Labels.Length
        member s.SampleShape = [| s.Channels; s.Height; s.Width |]
        member s.Label i = s.Labels[i]

        member s.CopySample(i, dst, offset) =
            let n = s.SampleSize
            let d = Span<float32>(dst, offset, n)

            System.Numerics.Tensors.TensorPrimitives.ConvertTruncating<byte, float32>(
                ReadOnlySpan(s.Pixels, i * n, n),
                d
            )

            System.Numerics.Tensors.TensorPrimitives.Divide(ReadOnlySpan<float32>(dst, offset, n), 255.0f, d)

module ImageSet =
    /// An image set from its parts; checks the pixel count and the label range.
    let create name (pixels: byte[]) (labels: int[]) channels height width classes =
        if channels <= 0 || height <= 0 || width <= 0 || classes <= 0 then
            Errors.invalidArg
                "ImageSet.create"
                "channels, height, width, classes"
                (channels, height, width, classes)
                "positive sizes"

        let per = int64 channels * int64 height * int64 width

        if int64 pixels.Length <> per * int64 labels.Length then
            Errors.invalidArg
                "ImageSet.create"
                "pixels.Length"
                pixels.Length
                (sprintf "%d labels × %d bytes per image = %d" labels.Length per (per * int64 labels.Length))

        labels
        |> Array.iteri (fun i l ->
            if l < 0 || l >= classes then
                Errors.invalidArg "ImageSet.create" (sprintf "labels[%d]" i) l (sprintf "a class in [0, %d)" classes))

        {
            Name = name
            Pixels = pixels
            Labels = labels
            Channels = channels
            Height = height
            Width = width
            Classes = classes
        }

    /// Writes sample i as float32 in [0, 1], [C, H, W], into dst[offset..].
    let copySample (s: ImageSet) (i: int) (dst: float32[]) (offset: int) =
        (s :> ISampleSource).CopySample(i, dst, offset)

    /// The samples at <c>indices</c> as a tensor [n, C, H, W] in [0, 1] (allocates; batching reuses buffers instead).
    let toTensor (s: ImageSet) (indices: int[]) =
        let n = s.SampleSize
        let data = Array.zeroCreate<float32>(indices.Length * n)

        indices |> Array.iteri (fun j i -> copySample s i data (j * n))

        Tensor.ofArray [| indices.Length; s.Channels; s.Height; s.Width |] data

    /// The samples at <c>indices</c>, in that order, as a new set.
    let subset (s: ImageSet) (indices: int[]) =
        let n = s.SampleSize
        let px = Array.zeroCreate<byte>(indices.Length * n)

        indices
        |> Array.iteri (fun j i -> Buffer.BlockCopy(s.Pixels, i * n, px, j * n, n))

        { s with
            Pixels = px
            Labels = indices |> Array.map (fun i -> s.Labels[i])
        }
