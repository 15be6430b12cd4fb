namespace SnnSpec.HwSim

open System
open System.Numerics.Tensors
open SnnSpec

/// The column read-out converter.
[<RequireQualifiedAccess>]
type Adc =
    /// No quantization and no clipping: the exact column partial sum.
    | Ideal
    /// A `bits`-bit converter over [0, fullScale] (in units of one cell level on one active row):
    /// the partial sum is clipped to the full scale, then rounded to one of 2^bits − 1 steps
    /// (methods.md §6.8, the simple model). fullScale None is the largest possible partial sum,
    /// Rows · (2^min(b_cell, b_w) − 1).
    | Quantized of bits: int * fullScale: float option

/// Seeded multiplicative per-cell conductance variation: g = g₀ · max(0, 1 + σ·z), z ~ N(0, 1),
/// drawn once per cell when the crossbar is programmed.
type Variation = { Sigma: float; Seed: int }

/// The functional datapath's configuration.
type CrossbarConfig =
    {
        /// Rows per crossbar X: inputs are processed in X-row tiles, each with its own ADC read-out.
        Rows: int
        /// Signed weight bits b: weights in [−2^(b−1), 2^(b−1) − 1].
        WeightBits: int
        /// Bits per cell b_cell: a weight spans ⌈b / b_cell⌉ slice columns.
        BitsPerCell: int
        Adc: Adc
        Variation: Variation option
    }

/// Integer weights programmed onto crossbars: offset-encoded codes, sliced over cells, with any
/// conductance variation already drawn.
type ProgrammedCrossbar =
    {
        Config: CrossbarConfig
        Inputs: int
        Outputs: int
        /// The offset 2^(b−1) added to every weight so that codes are non-negative.
        Offset: int
        /// Cell conductances in level units, per slice, row-major [input, output].
        Cells: float[][]
    }

/// Functional crossbar inference (methods.md §6.8, simplified NICE): for binary spike inputs x and
/// integer weights W [inputs, outputs],
/// - every weight is stored as the code c = w + 2^(b−1) ≥ 0, split into slices of b_cell bits, one
///   cell (column) per slice;
/// - per X-row tile and slice column, the analog partial sum p = Σ_{i in tile} x_i · g_i is converted
///   by the ADC, the slices are shifted and added (Σ_s q_s · 2^(s·b_cell)), and a digital subtractor
///   removes 2^(b−1) × (active rows of the tile);
/// - tiles are summed digitally.
/// With Adc.Ideal and no variation the output is exactly the integer product Σ_i x_i · w_ij.
module Crossbar =
    /// A 64-row crossbar with 4-bit weights in 4-bit cells, an ideal ADC and no variation.
    let ideal =
        {
            Rows = 64
            WeightBits = 4
            BitsPerCell = 4
            Adc = Adc.Ideal
            Variation = None
        }

    /// Raises SnnSpecException naming the first bad parameter.
    let validate (c: CrossbarConfig) =
        let op = "Crossbar"

        if c.Rows <= 0 then
            Errors.invalidArg op "Rows" c.Rows "a positive crossbar size"

        if c.WeightBits <= 0 || c.WeightBits > 31 then
            Errors.invalidArg op "WeightBits" c.WeightBits "1 to 31 bits"

        if c.BitsPerCell <= 0 then
            Errors.invalidArg op "BitsPerCell" c.BitsPerCell "a positive number of bits"

        match c.Adc with
        | Adc.Ideal -> ()
        | Adc.Quantized(bits, fs) ->
            if bits <= 0 || bits > 30 then
                Errors.invalidArg op "Adc bits" bits "1 to 30 bits"

            match fs with
            | Some f when not (f > 0.0 && Double.IsFinite f) ->
                Errors.invalidArg op "Adc fullScale" f "a positive, finite partial sum"
            | _ -> ()

        match c.Variation with
        | Some v when not (v.Sigma >= 0.0) -> Errors.invalidArg op "Variation.Sigma" v.Sigma "a non-negative spread"
        | _ -> ()

    /// Slice columns per weight ⌈b / b_cell⌉.
    let slices (c: CrossbarConfig) =
        (c.WeightBits + c.BitsPerCell - 1) / c.BitsPerCell

    /// The ADC full scale in level units.
    let fullScale (c: CrossbarConfig) =
        match c.Adc with
        | Adc.Quantized(_, Some f) -> f
        | _ -> float c.Rows * (2.0 ** float (min c.BitsPerCell c.WeightBits) - 1.0)

    /// The ADC of a config as a function of the partial sum p: p itself when ideal, else p clipped
    /// to [0, FS] and rounded to the nearest of 2^bits − 1 steps, round(clip(p)/FS·L)·FS/L.
    let converter (c: CrossbarConfig) : float -> float =
        match c.Adc with
        | Adc.Ideal -> id
        | Adc.Quantized(bits, _) ->
            let fs = fullScale c
            let levels = 2.0 ** float bits - 1.0

            fun p ->
                let clipped = Math.Clamp(p, 0.0, fs)
                Math.Round(clipped / fs * levels, MidpointRounding.AwayFromZero) * fs / levels

    /// One ADC conversion of a partial sum p (converter c p).
    let convert (c: CrossbarConfig) (p: float) = converter c p

    let private gaussian (rng: Random) =
        let u1 = 1.0 - rng.NextDouble()
        let u2 = rng.NextDouble()
        sqrt (-2.0 * log u1) * cos (2.0 * Math.PI * u2)

    /// Programs integer weights [inputs, outputs]; raises SnnSpecException naming a weight outside
    /// the signed range.
    let program (c: CrossbarConfig) (weights: int[,]) : ProgrammedCrossbar =
        validate c
        let n = Array2D.length1 weights
        let m = Array2D.length2 weights

        if n = 0 || m = 0 then
            Errors.invalidArg "Crossbar.program" "weights" [| n; m |] "a non-empty [inputs, outputs] matrix"

        let offset = 1 <<< (c.WeightBits - 1)
        let s = slices c
        let mask = (1 <<< c.BitsPerCell) - 1
        let rng = c.Variation |> Option.map (fun v -> v, Random v.Seed)
        let cells = Array.init s (fun _ -> Array.zeroCreate (n * m))

        for i in 0 .. n - 1 do
            for j in 0 .. m - 1 do
                let w = weights[i, j]

                if w < -offset || w > offset - 1 then
                    Errors.invalidArg
                        "Crossbar.program"
                        (sprintf "weights[%d, %d]" i j)
                        w
                        (sprintf "a %d-bit signed integer in [%d, %d]" c.WeightBits -offset (offset - 1))

                let code = w + offset

                for k in 0 .. s - 1 do
                    let level = float ((code >>> (k * c.BitsPerCell)) &&& mask)

                    let g =
                        match rng with
                        | Some(v, r) -> level * max 0.0 (1.0 + v.Sigma * gaussian r)
                        | None -> level

                    cells[k][i * m + j] <- g

        {
            Config = c
            Inputs = n
            Outputs = m
            Offset = offset
            Cells = cells
        }

    /// Visits every ADC read of the spike vector spikes[offset .. offset + Inputs − 1]: for each X-row
    /// tile and each slice k, visit active k psum with psum[j] the column partial sum
    /// Σ_{active rows i of the tile} g_k[i, j] and active the tile's active row count (psum, length
    /// Outputs, is the caller's scratch and is overwritten between calls).
    let private visitReads
        (p: ProgrammedCrossbar)
        (spikes: bool[])
        (offset: int)
        (psum: float[])
        (visit: int -> int -> float[] -> unit)
        =
        let c = p.Config
        let m = p.Outputs
        let tiles = (p.Inputs + c.Rows - 1) / c.Rows

        for t in 0 .. tiles - 1 do
            let r0 = t * c.Rows
            let r1 = min p.Inputs (r0 + c.Rows) - 1
            let mutable active = 0

            for i in r0..r1 do
                if spikes[offset + i] then
                    active <- active + 1

            for k in 0 .. p.Cells.Length - 1 do
                Array.fill psum 0 m 0.0
                let g = p.Cells[k]

                if active > 0 then
                    for i in r0..r1 do
                        if spikes[offset + i] then
                            TensorPrimitives.Add(
                                ReadOnlySpan<float>(psum),
                                ReadOnlySpan<float>(g, i * m, m),
                                Span<float>(psum)
                            )

                visit active k psum

    let private checkLength (op: string) (p: ProgrammedCrossbar) (spikes: bool[]) (offset: int) =
        if offset < 0 || offset > spikes.Length - p.Inputs then
            Errors.invalidArg
                op
                "spikes length, offset"
                (spikes.Length, offset)
                (sprintf "%d inputs from the offset on" p.Inputs)

    /// A batched reader of one programmed crossbar: <c>read spikes offsets count out</c> writes, for
    /// each r < count, the datapath output of the spike vector spikes[offsets[r] .. offsets[r] + Inputs − 1]
    /// to out[r·Outputs .. (r + 1)·Outputs − 1]:
    /// out_rj = Σ_tiles [Σ_k 2^(k·b_cell) · ADC(psum_rkj)] − offset · active_r.
    /// Every step runs on the whole [count, Outputs] block of a tile and slice (TensorPrimitives; the
    /// ADC is <c>converter</c>'s arithmetic element by element), and every element sees the same
    /// operations in the same order as a read on its own, so batching never changes a value. The
    /// reader owns its scratch (grown on demand): use one reader per thread.
    let batchReader (p: ProgrammedCrossbar) : bool[] -> int[] -> int -> float[] -> unit =
        let c = p.Config
        let m = p.Outputs
        let tiles = (p.Inputs + c.Rows - 1) / c.Rows
        let shifts = Array.init p.Cells.Length (fun k -> 2.0 ** float (k * c.BitsPerCell))

        let quantized, fs, levels =
            match c.Adc with
            | Adc.Ideal -> false, 0.0, 0.0
            | Adc.Quantized(bits, _) -> true, fullScale c, 2.0 ** float bits - 1.0

        let mutable block = Array.zeroCreate<float> 0
        let mutable active = Array.zeroCreate<int> 0

        fun spikes offsets count out ->
            if count < 0 || count > offsets.Length then
                Errors.invalidArg "Crossbar.batchReader" "count" count (sprintf "0 … %d offsets" offsets.Length)

            if out.Length < count * m then
                Errors.invalidArg
                    "Crossbar.batchReader"
                    "out length"
                    out.Length
                    (sprintf "at least %d (count × outputs)" (count * m))

            for r in 0 .. count - 1 do
                checkLength "Crossbar.batchReader" p spikes offsets[r]

            if active.Length < count then
                block <- Array.zeroCreate (count * m)
                active <- Array.zeroCreate count

            let n = count * m
            Array.fill out 0 n 0.0

            for t in 0 .. tiles - 1 do
                let r0 = t * c.Rows
                let r1 = min p.Inputs (r0 + c.Rows) - 1
                let mutable live = false

                for r in 0 .. count - 1 do
                    let o = offsets[r]
                    let mutable a = 0

                    for i in r0..r1 do
                        if spikes[o + i] then
                            a <- a + 1

                    active[r] <- a
                    live <- live || a > 0

                // A read without active rows in a tile gets 0 from it through any ADC: rows stay as they are.
                if live then
                    for k in 0 .. p.Cells.Length - 1 do
                        let g = p.Cells[k]
                        Array.fill block 0 n 0.0

                        for r in 0 .. count - 1 do
                            if active[r] > 0 then
                                let o = offsets[r]

                                for i in r0..r1 do
                                    if spikes[o + i] then
                                        TensorPrimitives.Add(
                                            ReadOnlySpan<float>(block, r * m, m),
                                            ReadOnlySpan<float>(g, i * m, m),
                                            Span<float>(block, r * m, m)
                                        )

                        let q = Span<float>(block, 0, n)

                        if quantized then
                            TensorPrimitives.Clamp(ReadOnlySpan<float>(block, 0, n), 0.0, fs, q)
                            TensorPrimitives.Divide(ReadOnlySpan<float>(block, 0, n), fs, q)
                            TensorPrimitives.Multiply(ReadOnlySpan<float>(block, 0, n), levels, q)
                            TensorPrimitives.Round(ReadOnlySpan<float>(block, 0, n), MidpointRounding.AwayFromZero, q)
                            TensorPrimitives.Multiply(ReadOnlySpan<float>(block, 0, n), fs, q)
                            TensorPrimitives.Divide(ReadOnlySpan<float>(block, 0, n), levels, q)

                        TensorPrimitives.Multiply(ReadOnlySpan<float>(block, 0, n), shifts[k], q)

                        TensorPrimitives.Add(
                            ReadOnlySpan<float>(out, 0, n),
                            ReadOnlySpan<float>(block, 0, n),
                            Span<float>(out, 0, n)
                        )

                    for r in 0 .. count - 1 do
                        if active[r] > 0 then
                            TensorPrimitives.Subtract(
                                ReadOnlySpan<float>(out, r * m, m),
                                float (p.Offset * active[r]),
                                Span<float>(out, r * m, m)
                            )

    /// One read of a spike vector (length = inputs) through the datapath: one value per output,
    /// out_j = Σ_tiles [Σ_k 2^(k·b_cell) · ADC(psum_kj)] − offset · active (<c>batchReader</c>, one read).
    let forward (p: ProgrammedCrossbar) (spikes: bool[]) : float[] =
        if spikes.Length <> p.Inputs then
            Errors.invalidArg "Crossbar.forward" "spikes length" spikes.Length (sprintf "%d inputs" p.Inputs)

        let out = Array.zeroCreate p.Outputs
        batchReader p spikes [| 0 |] 1 out
        out

    /// An observer of one programmed crossbar: <c>see spikes offset</c> calls record with every column
    /// partial sum (before the ADC) of the reads of spikes[offset .. offset + Inputs − 1] whose tile has
    /// at least one active row: the values an ADC's full scale must cover. One observer per thread.
    let observer (p: ProgrammedCrossbar) (record: float -> unit) : bool[] -> int -> unit =
        let psum = Array.zeroCreate p.Outputs

        fun spikes offset ->
            checkLength "Crossbar.observer" p spikes offset

            visitReads p spikes offset psum (fun active _ psum ->
                if active > 0 then
                    for v in psum do
                        record v)

    /// <c>observer</c> for one spike vector (length = inputs).
    let observe (p: ProgrammedCrossbar) (spikes: bool[]) (record: float -> unit) =
        if spikes.Length <> p.Inputs then
            Errors.invalidArg "Crossbar.observe" "spikes length" spikes.Length (sprintf "%d inputs" p.Inputs)

        observer p record spikes 0

    /// forward for each spike vector of a batch.
    let forwardBatch (p: ProgrammedCrossbar) (batch: bool[][]) = batch |> Array.map (forward p)

    /// Programs and reads in one call.
    let matmul (c: CrossbarConfig) (weights: int[,]) (spikes: bool[]) = forward (program c weights) spikes

    /// The exact integer product Σ_i x_i · w_ij, the reference the ideal datapath reproduces.
    let exact (weights: int[,]) (spikes: bool[]) : int64[] =
        let n = Array2D.length1 weights
        let m = Array2D.length2 weights

        if spikes.Length <> n then
            Errors.invalidArg "Crossbar.exact" "spikes length" spikes.Length (sprintf "%d inputs" n)

        Array.init m (fun j ->
            let mutable s = 0L

            for i in 0 .. n - 1 do
                if spikes[i] then
                    s <- s + int64 weights[i, j]

            s)

    /// Fraction of samples whose arg-max output agrees with the label (first maximum wins).
    let accuracy (outputs: float[][]) (labels: int[]) =
        if outputs.Length <> labels.Length || outputs.Length = 0 then
            Errors.invalidArg
                "Crossbar.accuracy"
                "labels length"
                labels.Length
                (sprintf "%d outputs (non-zero)" outputs.Length)

        let hits =
            Array.map2
                (fun (o: float[]) l ->
                    let mutable best = 0

                    for j in 1 .. o.Length - 1 do
                        if o[j] > o[best] then
                            best <- j

                    if best = l then 1 else 0)
                outputs
                labels
            |> Array.sum

        float hits / float outputs.Length

    /// A convolution (square kernel, no bias) on a binary spike map [C_in, H, W] through kernel-wise
    /// mapped crossbars (methods.md §6.2, §6.8): one crossbar array per tap (kh, kw) holding
    /// W[:, :, kh, kw] as [C_in, C_out], its output partial sums added digitally. Weights are
    /// [C_out, C_in, k, k]; the result is [C_out, H_o, W_o] with H_o = (H + 2p − k)/s + 1.
    let conv2d (c: CrossbarConfig) (weights: int[,,,]) (stride: int) (padding: int) (spikes: bool[,,]) : float[,,] =
        let cout = Array4D.length1 weights
        let cin = Array4D.length2 weights
        let k = Array4D.length3 weights

        if Array4D.length4 weights <> k then
            Errors.invalidArg "Crossbar.conv2d" "weights" [| cout; cin; k; Array4D.length4 weights |] "a square kernel"

        if Array3D.length1 spikes <> cin then
            Errors.invalidArg
                "Crossbar.conv2d"
                "spikes channels"
                (Array3D.length1 spikes)
                (sprintf "%d input channels" cin)

        if stride <= 0 || padding < 0 then
            Errors.invalidArg "Crossbar.conv2d" "stride, padding" (stride, padding) "stride ≥ 1 and padding ≥ 0"

        let h = Array3D.length2 spikes
        let w = Array3D.length3 spikes

        if h + 2 * padding < k || w + 2 * padding < k then
            Errors.invalidArg
                "Crossbar.conv2d"
                "kernel"
                k
                (sprintf "at most the padded input %d×%d" (h + 2 * padding) (w + 2 * padding))

        let ho = (h + 2 * padding - k) / stride + 1
        let wo = (w + 2 * padding - k) / stride + 1
        let out = Array3D.zeroCreate cout ho wo
        let column = Array.zeroCreate cin

        for kh in 0 .. k - 1 do
            for kw in 0 .. k - 1 do
                let tap =
                    program
                        { c with
                            Variation = c.Variation |> Option.map (fun v -> { v with Seed = v.Seed + kh * k + kw })
                        }
                        (Array2D.init cin cout (fun i o -> weights[o, i, kh, kw]))

                for oy in 0 .. ho - 1 do
                    for ox in 0 .. wo - 1 do
                        let y = oy * stride - padding + kh
                        let x = ox * stride - padding + kw
                        let inside = y >= 0 && y < h && x >= 0 && x < w

                        for i in 0 .. cin - 1 do
                            column[i] <- inside && spikes[i, y, x]

                        let r = forward tap column

                        for o in 0 .. cout - 1 do
                            out[o, oy, ox] <- out[o, oy, ox] + r[o]

        out
