namespace SnnSpec.Data

open System
open System.IO
open System.IO.Compression

/// How an IDX image file orders each image's pixels.
type IdxLayout =
    /// Row-major (MNIST, Fashion-MNIST, KMNIST).
    | RowMajor
    /// Column-major, as EMNIST ships its images; transposed on load so images read upright.
    | Transposed

/// The IDX format of the MNIST family: bytes 0–1 are zero, byte 2 the element type (0x08 = uint8,
/// the only type these sets use), byte 3 the number of dimensions d, then d big-endian uint32 sizes,
/// then the elements row-major. Images are d = 3 [N, H, W], labels d = 1 [N]. Files may be raw or
/// gzip-compressed (name ending in <c>.gz</c>).
module Idx =
    let private fixFile = Bytes.redownload

    let private headerOf (path: string) (b: byte[]) (got: int) =
        if got < 4 then
            Bytes.fail
                path
                (int64 got)
                (sprintf "the file ends after %d bytes, inside the 4-byte magic number" got)
                fixFile

        if b[0] <> 0uy || b[1] <> 0uy then
            Bytes.fail
                path
                0L
                (sprintf "wrong magic number %02x %02x %02x %02x (IDX files start 00 00 08 0d)" b[0] b[1] b[2] b[3])
                "pass an IDX file (e.g. train-images-idx3-ubyte or its .gz); a different format needs its own reader"

        if b[2] <> 0x08uy then
            Bytes.fail
                path
                2L
                (sprintf "element type 0x%02x; only 0x08 (uint8) is supported" b[2])
                "image and label files of the MNIST family are uint8; check the file is one of them"

        let d = int b[3]

        if d < 1 || d > 4 then
            Bytes.fail path 3L (sprintf "%d dimensions; expected 1 (labels) to 4" d) fixFile

        let hl = 4 + 4 * d

        if got < hl then
            Bytes.fail
                path
                (int64 got)
                (sprintf "the file ends after %d bytes, inside the %d-byte header" got hl)
                fixFile

        let dims = Array.init d (fun i -> Bytes.u32be b (4 + 4 * i))

        let mutable total = 1L

        for i in 0 .. d - 1 do
            if dims[i] > uint32 Int32.MaxValue then
                Bytes.fail path (int64 (4 + 4 * i)) (sprintf "dimension %d is %d, too large" i dims[i]) fixFile

            let cap = Int64.MaxValue / 65536L

            total <-
                if dims[i] <> 0u && total > cap / int64 dims[i] then
                    cap
                else
                    total * int64 dims[i]

        Array.map int dims, hl, int64 hl + total

    /// The dimensions and the uint8 elements (header stripped) of an IDX file. The header's sizes must
    /// match the file length exactly.
    let read (path: string) : int[] * byte[] =
        let all =
            Bytes.readAll path 20 (fun b got ->
                let _, _, total = headerOf path b got
                total)

        let dims, hl, total = headerOf path all all.Length

        if int64 all.Length <> total then
            Bytes.fail
                path
                (int64 (min (int64 all.Length) total))
                (sprintf
                    "the header declares %s = %d bytes in all but the file holds %d"
                    (String.Join("×", dims))
                    total
                    all.Length)
                (if int64 all.Length < total then
                     "the file is truncated; " + fixFile
                 else
                     "the file has trailing data or a wrong header; " + fixFile)

        dims, all[hl..]

    /// Images [N, H, W] as uint8 pixels [N, 1, H, W].
    let readImages (layout: IdxLayout) (path: string) =
        let dims, px = read path

        if dims.Length <> 3 then
            Bytes.fail
                path
                3L
                (sprintf "%d dimensions; an image file has 3 [N, H, W]" dims.Length)
                "pass the images file (…-images-idx3-ubyte), not the labels file"

        let n, h, w = dims[0], dims[1], dims[2]

        match layout with
        | RowMajor -> n, h, w, px
        | Transposed ->
            let out = Array.zeroCreate<byte> px.Length
            let per = h * w

            for i in 0 .. n - 1 do
                let o = i * per
                // Stored column-major as [W, H]: element (x, y) of the stored array is pixel (y, x).
                for y in 0 .. h - 1 do
                    for x in 0 .. w - 1 do
                        out[o + y * w + x] <- px[o + x * h + y]

            n, h, w, out

    /// Labels [N], each checked to lie in [0, classes).
    let readLabels (classes: int) (path: string) =
        let dims, raw = read path

        if dims.Length <> 1 then
            Bytes.fail
                path
                3L
                (sprintf "%d dimensions; a label file has 1 [N]" dims.Length)
                "pass the labels file (…-labels-idx1-ubyte), not the images file"

        raw
        |> Array.mapi (fun i b ->
            let l = int b

            if l >= classes then
                Bytes.fail
                    path
                    (8L + int64 i)
                    (sprintf "label %d of sample %d is outside [0, %d)" l i classes)
                    "check the class count passed for this dataset (e.g. EMNIST letters has 27 with 0 unused) or the file"

            l)

    /// An image set from an IDX images file and its labels file; the counts must agree.
    let load (name: string) (classes: int) (layout: IdxLayout) (imagesPath: string) (labelsPath: string) =
        let n, h, w, px = readImages layout imagesPath
        let labels = readLabels classes labelsPath

        if labels.Length <> n then
            Bytes.fail
                labelsPath
                4L
                (sprintf "%d labels but %s holds %d images" labels.Length imagesPath n)
                "pair the images file with the labels file of the same split (train with train, t10k with t10k)"

        ImageSet.create name px labels 1 h w classes

    /// Writes uint8 elements with the given dimensions as an IDX file (gzip when the name ends in .gz).
    let write (path: string) (dims: int[]) (data: byte[]) =
        let header = Array.zeroCreate<byte>(4 + 4 * dims.Length)
        header[2] <- 0x08uy
        header[3] <- byte dims.Length

        dims
        |> Array.iteri (fun i d ->
            let o = 4 + 4 * i
            header[o] <- byte (d >>> 24)
            header[o + 1] <- byte (d >>> 16)
            header[o + 2] <- byte (d >>> 8)
            header[o + 3] <- byte d)

        use fs = File.Create path

        if Bytes.isGzip path then
            use gz = new GZipStream(fs, CompressionLevel.Fastest)
            gz.Write(header, 0, header.Length)
            gz.Write(data, 0, data.Length)
        else
            fs.Write(header, 0, header.Length)
            fs.Write(data, 0, data.Length)
