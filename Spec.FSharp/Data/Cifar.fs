namespace SnnSpec.Data

open System

/// Which label of CIFAR-100 to use.
type Cifar100Labels =
    /// The 20 superclasses.
    | Coarse
    /// The 100 classes.
    | Fine

/// CIFAR-10 and CIFAR-100 binary batches. A CIFAR-10 file (<c>data_batch_1.bin</c> … <c>_5</c>,
/// <c>test_batch.bin</c>) is a sequence of 3073-byte records: one label byte in [0, 10) then a 32×32
/// image as three 1024-byte planes R, G, B (rows top to bottom). A CIFAR-100 file (<c>train.bin</c>,
/// <c>test.bin</c>) has 3074-byte records: coarse label [0, 20), fine label [0, 100), then the image.
/// Images load as [N, 3, 32, 32] uint8.
module Cifar =
    [<Literal>]
    let ImageBytes = 3072

    let private readRecords (path: string) (labelBytes: int) (pick: int) (classes: int) =
        if Bytes.isGzip path then
            Bytes.fail
                path
                0L
                "CIFAR batches are read uncompressed"
                "extract cifar-10-binary.tar.gz / cifar-100-binary.tar.gz and pass the .bin files inside"

        let all = Bytes.readAll path 0 (fun _ _ -> 0L)
        let rec' = labelBytes + ImageBytes

        if all.Length % rec' <> 0 then
            Bytes.fail
                path
                (int64 (all.Length / rec' * rec'))
                (sprintf
                    "the file is %d bytes, not a whole number of %d-byte records (%d + %d bytes left over)"
                    all.Length
                    rec'
                    (all.Length / rec')
                    (all.Length % rec'))
                (sprintf
                    "the file is truncated or not a CIFAR-%s binary batch; use the binary version (…-binary.tar.gz), not the Python pickles"
                    (if labelBytes = 1 then "10" else "100"))

        let n = all.Length / rec'
        let px = Array.zeroCreate<byte>(n * ImageBytes)

        let labels =
            Array.init n (fun i ->
                let o = i * rec'
                let l = int all[o + pick]

                if l >= classes then
                    Bytes.fail
                        path
                        (int64 (o + pick))
                        (sprintf "label %d of record %d is outside [0, %d)" l i classes)
                        "the file is damaged or of the other CIFAR variant (CIFAR-10 records are 3073 bytes, CIFAR-100 records 3074)"

                Buffer.BlockCopy(all, o + labelBytes, px, i * ImageBytes, ImageBytes)
                l)

        px, labels

    let private concat name classes (parts: (byte[] * int[])[]) =
        let px = parts |> Array.map fst |> Array.concat
        let labels = parts |> Array.map snd |> Array.concat
        ImageSet.create name px labels 3 32 32 classes

    /// CIFAR-10 from one or more binary batch files, concatenated in the order given.
    let load10 (paths: string seq) =
        paths
        |> Seq.map (fun p -> readRecords p 1 0 10)
        |> Array.ofSeq
        |> concat "CIFAR-10" 10

    /// CIFAR-100 from one or more binary files with the chosen labels.
    let load100 (labels: Cifar100Labels) (paths: string seq) =
        let pick, classes =
            match labels with
            | Coarse -> 0, 20
            | Fine -> 1, 100

        paths
        |> Seq.map (fun p -> readRecords p 2 pick classes)
        |> Array.ofSeq
        |> concat "CIFAR-100" classes
