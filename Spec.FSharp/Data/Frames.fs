namespace SnnSpec.Data

open System
open System.IO
open System.Security.Cryptography
open System.Text
open SnnSpec

/// How events are divided among a fixed number of frames T.
type SplitBy =
    /// Equal event counts: frame k takes events [k·⌊N/T⌋, (k+1)·⌊N/T⌋); the last frame takes the rest.
    | ByCount
    /// Equal time spans: dt = ⌊(t_last − t_first) / T⌋ and frame k takes t ∈ [t_first + k·dt, t_first + (k+1)·dt);
    /// the last frame takes the rest.
    | ByTime

/// How an event stream becomes a frame tensor [T, C, H', W'] of event counts.
type FrameOptions =
    {
        Frames: int
        SplitBy: SplitBy
        /// Integer spatial factor f: H' = ⌈H / f⌉, W' = ⌈W / f⌉, counts summed over f × f blocks.
        Downsample: int
        /// C = 1 (ON and OFF counted together) instead of C = 2 (channel 0 = OFF, 1 = ON).
        MergePolarity: bool
    }

/// The event counts of a frame set [N, T, C, H', W']: one byte each when every count of the set
/// is at most 255 (short frames, the usual case), else two (saturating at 65535).
type FrameCounts =
    | Bytes of byte[]
    | Words of uint16[]

    member c.Length =
        match c with
        | Bytes b -> b.Length
        | Words w -> w.Length

    /// Bytes per count (1 or 2).
    member c.ElementSize =
        match c with
        | Bytes _ -> 1
        | Words _ -> 2

    /// The counts as int32 (a copy).
    member c.ToArray() =
        match c with
        | Bytes b -> Array.map int b
        | Words w -> Array.map int w

/// Integrated frames of an event set, stored compactly as counts (FrameCounts), [N, T, C, H', W'];
/// samples convert to float32 counts per batch.
type FrameSet =
    {
        Name: string
        Counts: FrameCounts
        Labels: int[]
        /// [T; C; H'; W'].
        Shape: int[]
        Classes: int
    }

    member s.Count = s.Labels.Length

    interface ISampleSource with
        member s.Count = s.Labels.Length
        member s.SampleShape = Array.copy s.Shape
        member s.Label i = s.Labels[i]

        member s.CopySample(i, dst, offset) =
            let n = Shape.numel s.Shape

            match s.Counts with
            | Bytes b ->
                System.Numerics.Tensors.TensorPrimitives.ConvertTruncating<byte, float32>(
                    ReadOnlySpan(b, i * n, n),
                    Span(dst, offset, n)
                )
            | Words w ->
                System.Numerics.Tensors.TensorPrimitives.ConvertTruncating<uint16, float32>(
                    ReadOnlySpan(w, i * n, n),
                    Span(dst, offset, n)
                )

/// Event streams to frames (as SpikingJelly's fixed-frame-number integration), cached integration,
/// and deterministic per-class train/test splits.
module Frames =
    let private check (o: FrameOptions) =
        if o.Frames <= 0 then
            Errors.invalidArg "Frames" "Frames" o.Frames "a positive frame count"

        if o.Downsample <= 0 then
            Errors.invalidArg "Frames" "Downsample" o.Downsample "a positive integer factor"

    /// The frame shape [T; C; H'; W'] for a width × height sensor.
    let shape (o: FrameOptions) (width: int) (height: int) =
        check o

        [|
            o.Frames
            (if o.MergePolarity then 1 else 2)
            (height + o.Downsample - 1) / o.Downsample
            (width + o.Downsample - 1) / o.Downsample
        |]

    /// The frame each event falls in (events ordered by time).
    let frameIndex (o: FrameOptions) (events: Event[]) =
        check o
        let n = events.Length
        let t = o.Frames

        match o.SplitBy with
        | ByCount ->
            let di = n / t
            Array.init n (fun i -> if di = 0 then t - 1 else min (t - 1) (i / di))
        | ByTime ->
            if n = 0 then
                [||]
            else
                let t0 = events[0].T
                let dt = (events[n - 1].T - t0) / int64 t

                events
                |> Array.map (fun e ->
                    if dt = 0L then
                        t - 1
                    else
                        int (min (int64 (t - 1)) (max 0L ((e.T - t0) / dt))))

    /// Writes the frames of one stream, [T, C, H', W'] float32 counts, into dst[offset..] (zeroed first);
    /// allocates nothing.
    let integrateInto (o: FrameOptions) (width: int) (height: int) (events: Event[]) (dst: float32[]) (offset: int) =
        let s = shape o width height
        let c, h, w = s[1], s[2], s[3]
        let per = c * h * w
        Array.Clear(dst, offset, o.Frames * per)
        let n = events.Length
        let f = o.Downsample
        let t0 = if n = 0 then 0L else events[0].T

        let dt =
            if n = 0 then
                0L
            else
                (events[n - 1].T - t0) / int64 o.Frames

        let di = n / o.Frames

        for i in 0 .. n - 1 do
            let e = events[i]

            let k =
                match o.SplitBy with
                | ByCount -> if di = 0 then o.Frames - 1 else min (o.Frames - 1) (i / di)
                | ByTime ->
                    if dt = 0L then
                        o.Frames - 1
                    else
                        int (min (int64 (o.Frames - 1)) (max 0L ((e.T - t0) / dt)))

            let x, y = int e.X, int e.Y

            if x < width && y < height then
                let ch = if o.MergePolarity then 0 else int e.P &&& 1
                let idx = offset + k * per + ch * h * w + (y / f) * w + x / f
                dst[idx] <- dst[idx] + 1.0f

    /// The frames of one stream as a new array [T, C, H', W'].
    let integrate (o: FrameOptions) (width: int) (height: int) (events: Event[]) =
        let buf = Array.zeroCreate<float32>(Shape.numel (shape o width height))
        integrateInto o width height events buf 0
        buf

    /// An event set as a batching source that integrates each sample's frames when it is copied
    /// (no precomputation, no memory per sample).
    let source (o: FrameOptions) (set: EventSet) =
        let s = shape o set.Width set.Height

        { new ISampleSource with
            member _.Count = set.Count
            member _.SampleShape = Array.copy s
            member _.Label i = set.Labels[i]

            member _.CopySample(i, dst, offset) =
                integrateInto o set.Width set.Height set.Samples[i] dst offset
        }

    /// The counts of n samples of per counts each, frame i (float32 counts) made by <c>frame i</c>
    /// in parallel: one byte per count, unless some count exceeds 255; then the frames are made again
    /// into two bytes per count. Only the compact counts of the whole set are ever held.
    let compactCounts (n: int) (per: int) (frame: int -> float32[]) : FrameCounts =
        let bytes = Array.zeroCreate<byte>(n * per)
        let overflow = ref false

        Kernels.Par.forEach n (fun i ->
            if not overflow.Value then
                let f = frame i

                for k in 0 .. per - 1 do
                    if f[k] > 255.0f then
                        overflow.Value <- true
                    else
                        bytes[i * per + k] <- byte f[k])

        if not overflow.Value then
            Bytes bytes
        else
            let words = Array.zeroCreate<uint16>(n * per)

            Kernels.Par.forEach n (fun i ->
                let f = frame i

                for k in 0 .. per - 1 do
                    words[i * per + k] <- uint16 (min 65535.0f f[k]))

            Words words

    /// Integrates every sample (in parallel) into a compact FrameSet.
    let integrateSet (o: FrameOptions) (set: EventSet) =
        let s = shape o set.Width set.Height
        let per = Shape.numel s

        let counts =
            compactCounts set.Count per (fun i -> integrate o set.Width set.Height set.Samples[i])

        {
            Name = set.Name
            Counts = counts
            Labels = Array.copy set.Labels
            Shape = s
            Classes = set.Classes
        }

    let private magicV1 = Encoding.ASCII.GetBytes "SNNFRM01"
    let private magic = Encoding.ASCII.GetBytes "SNNFRM02"

    /// Writes a FrameSet: "SNNFRM02", int32 N, T, C, H', W', classes, bytes per count (1 or 2;
    /// little-endian), int32 labels [N], counts [N, T, C, H', W'] as uint8 or uint16. (Files of
    /// version 1, "SNNFRM01" without the bytes-per-count field and with uint16 counts, still load.)
    let save (path: string) (f: FrameSet) =
        let tmp = path + "." + Guid.NewGuid().ToString("N") + ".part"

        do
            use w = new BinaryWriter(File.Create tmp)
            w.Write magic

            for v in Array.concat [ [| f.Count |]; f.Shape; [| f.Classes; f.Counts.ElementSize |] ] do
                w.Write(v: int)

            for l in f.Labels do
                w.Write(l: int)

            match f.Counts with
            | Bytes b -> w.Write b
            | Words c -> w.Write(Runtime.InteropServices.MemoryMarshal.AsBytes(ReadOnlySpan c))

        File.Move(tmp, path, true)

    /// Reads a FrameSet written by <c>save</c> (or a version-1 file, whose counts are narrowed to one
    /// byte when they fit), checking the header against the file length.
    let load (path: string) =
        let b = Bytes.readAll path 0 (fun _ _ -> 0L)
        let fix = "delete the cache file; it is rebuilt from the events"

        let version =
            if b.Length >= 32 && b[0..7] = magicV1 then
                1
            elif b.Length >= 36 && b[0..7] = magic then
                2
            else
                Bytes.fail path 0L "wrong magic number (expected \"SNNFRM02\" or \"SNNFRM01\")" fix

        let v i = int (Bytes.u32le b (8 + 4 * i))
        let n, t, c, h, w, classes = v 0, v 1, v 2, v 3, v 4, v 5
        let size = if version = 1 then 2 else v 6
        let header = if version = 1 then 32 else 36

        if size <> 1 && size <> 2 then
            Bytes.fail path 32L (sprintf "%d bytes per count (expected 1 or 2)" size) fix

        let per = int64 t * int64 c * int64 h * int64 w
        let expected = int64 header + 4L * int64 n + int64 size * int64 n * per

        if
            n < 0
            || t <= 0
            || c <= 0
            || h <= 0
            || w <= 0
            || classes <= 0
            || per > int64 Int32.MaxValue
        then
            Bytes.fail path 8L (sprintf "impossible sizes N=%d T=%d C=%d H=%d W=%d classes=%d" n t c h w classes) fix

        if expected <> int64 b.Length then
            Bytes.fail
                path
                (min expected (int64 b.Length))
                (sprintf "the header declares %d bytes but the file holds %d" expected b.Length)
                fix

        let labels =
            Array.init n (fun i ->
                let l = int (Bytes.u32le b (header + 4 * i))

                if l < 0 || l >= classes then
                    Bytes.fail path (int64 header + 4L * int64 i) (sprintf "label %d outside [0, %d)" l classes) fix

                l)

        let count = int (int64 n * per)
        let start = header + 4 * n

        let counts =
            if size = 1 then
                Bytes(b[start .. start + count - 1])
            else
                let words = Array.zeroCreate<uint16> count
                ReadOnlySpan(b, start, count * 2).CopyTo(Runtime.InteropServices.MemoryMarshal.AsBytes(Span words))

                // A version-1 file holds two bytes per count whatever the counts.
                if
                    count = 0
                    || System.Numerics.Tensors.TensorPrimitives.Max<uint16>(ReadOnlySpan words)
                       <= 255us
                then
                    Bytes(Array.map byte words)
                else
                    Words words

        {
            Name = Path.GetFileNameWithoutExtension path
            Counts = counts
            Labels = labels
            Shape = [| t; c; h; w |]
            Classes = classes
        }

    /// A key identifying the set's events and the options (SHA-256 over both).
    let fingerprint (o: FrameOptions) (set: EventSet) =
        use h = IncrementalHash.CreateHash HashAlgorithmName.SHA256
        h.AppendData(Encoding.UTF8.GetBytes(sprintf "%s|%A|%d|%d|%d" set.Name o set.Width set.Height set.Classes))

        for i in 0 .. set.Count - 1 do
            h.AppendData(BitConverter.GetBytes set.Labels[i])
            h.AppendData(Runtime.InteropServices.MemoryMarshal.AsBytes(ReadOnlySpan set.Samples[i]))

        Convert.ToHexStringLower(h.GetHashAndReset()).Substring(0, 24)

    /// The integrated frames of the set, loaded from <c>dir</c> when an earlier call with the same events
    /// and options saved them, else integrated and saved (atomically).
    let cached (dir: string) (o: FrameOptions) (set: EventSet) =
        Directory.CreateDirectory dir |> ignore
        let path = Path.Combine(dir, sprintf "frames-%s.bin" (fingerprint o set))

        if File.Exists path then
            load path
        else
            let f = integrateSet o set
            save path f
            f

    /// A deterministic train/test split for sets without an official one: within each class the
    /// indices are shuffled by a key derived from <c>key</c> and the class, and the first
    /// ⌈ratio · count⌉ go to training. Returns (train, test) indices, each in class order.
    let splitPerClass (labels: int[]) (trainRatio: float) (key: Rng) =
        if not (trainRatio >= 0.0 && trainRatio <= 1.0) then
            Errors.invalidArg "Frames.splitPerClass" "trainRatio" trainRatio "a ratio in [0, 1]"

        let byClass =
            labels |> Array.mapi (fun i l -> l, i) |> Array.groupBy fst |> Array.sortBy fst

        let train = ResizeArray<int>()
        let test = ResizeArray<int>()

        for c, members in byClass do
            let idx = members |> Array.map snd
            let perm = Rng.permutation idx.Length (Rng.fold c key)
            let k = int (Math.Ceiling(float idx.Length * trainRatio))

            for j in 0 .. idx.Length - 1 do
                (if j < k then train else test).Add idx[perm[j]]

        train.ToArray(), test.ToArray()

    /// The samples at <c>indices</c> as a new event set (the event arrays are shared).
    let subset (set: EventSet) (indices: int[]) =
        { set with
            Samples = indices |> Array.map (fun i -> set.Samples[i])
            Labels = indices |> Array.map (fun i -> set.Labels[i])
        }
