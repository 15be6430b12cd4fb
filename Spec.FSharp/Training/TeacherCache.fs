namespace SnnSpec.Training

open System
open System.Runtime.InteropServices
open System.Security.Cryptography
open SnnSpec
open SnnSpec.Data
open SnnSpec.Distillation

/// Storage precision of cached membranes and taps (logits are always float32).
[<RequireQualifiedAccess>]
type CachePrecision =
    | Float32
    /// IEEE half precision: half the memory, relative error ≤ 2⁻¹¹ within its range.
    | Float16

/// One cached output, sample-major: sample i's [T, …] values at i · PerSample.
type CachedArray =
    | Full of float32[]
    | Half of Half[]
    /// Binary spikes packed 64 per word.
    | Bits of uint64[]

type CachedOutput =
    {
        /// The per-sample shape [T, …] (the batch axis removed).
        Shape: int[]
        Values: CachedArray
    }

/// A frozen teacher's outputs (logits and requested probes) for every sample of a training set,
/// computed once and reused across epochs and across a versatile teacher's students. Valid only
/// while the teacher's parameters and the data are the ones fingerprinted, and only when the
/// student sees the teacher's exact input (no random augmentation).
type TeacherCache =
    {
        /// SHA-256 over the teacher's architecture name, mode, parameters, buffers and probes.
        TeacherFingerprint: string
        /// SHA-256 over the source's sample count, sample shape, every sample and label.
        DataFingerprint: string
        Count: int
        Logits: CachedOutput
        Membranes: Map<string, CachedOutput>
        Spikes: Map<string, CachedOutput>
        Taps: Map<string, CachedOutput>
    }

    /// Bytes held by the cached values.
    member c.Bytes =
        let size (o: CachedOutput) =
            match o.Values with
            | Full a -> int64 a.Length * 4L
            | Half a -> int64 a.Length * 2L
            | Bits a -> int64 a.Length * 8L

        size c.Logits
        + (Seq.concat [ c.Membranes.Values; c.Spikes.Values; c.Taps.Values ]
           |> Seq.sumBy size)

module TeacherCache =
    let private hex (b: byte[]) = Convert.ToHexString b

    let private addFloats (h: IncrementalHash) (a: float32[]) (offset: int) (n: int) =
        h.AppendData(MemoryMarshal.AsBytes(ReadOnlySpan<float32>(a, offset, n)))

    let private addInt (h: IncrementalHash) (v: int) = h.AppendData(BitConverter.GetBytes v)

    let private addString (h: IncrementalHash) (s: string) =
        h.AppendData(Text.Encoding.UTF8.GetBytes(s + "\u0000"))

    let private addParameters (h: IncrementalHash) (ps: Parameters) =
        for n, t in Parameters.toList ps do
            addString h n

            for d in t.Shape do
                addInt h d

            let a = t.ToArray()
            addFloats h a 0 a.Length

    /// The teacher fingerprint: architecture name, mode, parameters, buffers and the probe request.
    let teacherFingerprint (teacher: Model) (probes: ProbeRequest) =
        use h = IncrementalHash.CreateHash HashAlgorithmName.SHA256
        addString h teacher.Architecture.Name
        addString h (sprintf "%A" teacher.Mode)
        addParameters h teacher.Parameters
        addParameters h teacher.Buffers

        for kind, names in [ "m", probes.Membranes; "s", probes.Spikes; "t", probes.Taps ] do
            for n in names do
                addString h (kind + n)

        hex (h.GetHashAndReset())

    /// The data fingerprint: one pass over every sample and label of the source.
    let dataFingerprint (source: ISampleSource) =
        use h = IncrementalHash.CreateHash HashAlgorithmName.SHA256
        addInt h source.Count

        for d in source.SampleShape do
            addInt h d

        let n = Shape.numel source.SampleShape
        let buf = Array.zeroCreate<float32> n

        for i in 0 .. source.Count - 1 do
            source.CopySample(i, buf, 0)
            addFloats h buf 0 n
            addInt h (source.Label i)

        hex (h.GetHashAndReset())

    let private isBinary (t: Tensor) =
        t.ToArray() |> Array.forall (fun v -> v = 0.0f || v = 1.0f)

    /// Allocates the cache array for n samples of per-sample size per.
    let private alloc (kind: string) (precision: CachePrecision) (binary: bool) (n: int) (per: int) =
        let total = int64 n * int64 per

        if kind = "spikes" && binary then
            Bits(Array.zeroCreate (int ((total + 63L) / 64L)))
        elif kind = "logits" || precision = CachePrecision.Float32 then
            Full(Array.zeroCreate (int total))
        else
            Half(Array.zeroCreate (int total))

    /// Writes a batch output [T, B, …] for samples first … first + B − 1 into a [N, T, …] array.
    let private store (dst: CachedArray) (first: int) (t: Tensor) =
        let s = t.Shape
        let steps, b = s[0], s[1]
        let inner = Shape.numel s[2..]
        let src = t.ToArray()
        let per = steps * inner

        for j in 0 .. b - 1 do
            for k in 0 .. steps - 1 do
                let from = (k * b + j) * inner
                let at = (first + j) * per + k * inner

                match dst with
                | Full a -> Array.blit src from a at inner
                | Half a ->
                    System.Numerics.Tensors.TensorPrimitives.ConvertToHalf(
                        ReadOnlySpan<float32>(src, from, inner),
                        Span<Half>(a, at, inner)
                    )
                | Bits a ->
                    for e in 0 .. inner - 1 do
                        if src[from + e] <> 0.0f then
                            let bit = int64 (at + e)
                            a[int (bit >>> 6)] <- a[int (bit >>> 6)] ||| (1UL <<< int (bit &&& 63L))

    /// Computes the cache: one eval-mode, no-gradient teacher pass over the source in order, in
    /// batches of batchSize. Spikes that are all 0/1 are packed as bits.
    let build
        (precision: CachePrecision)
        (batchSize: int)
        (teacher: Model)
        (probes: ProbeRequest)
        (source: ISampleSource)
        : TeacherCache =
        if batchSize < 1 then
            Errors.invalidArg "TeacherCache.build" "batchSize" batchSize "a positive batch size"

        let n = source.Count
        let sampleShape = source.SampleShape

        let probes = { probes with FiringRates = false }

        let ctx =
            { ForwardContext.Eval with
                Probes = probes
            }

        let mutable logits = None
        let arrays = Collections.Generic.Dictionary<string * string, CachedOutput>()

        let get (kind: string) (name: string) (t: Tensor) =
            match arrays.TryGetValue((kind, name)) with
            | true, o -> o
            | _ ->
                let shape = Array.append [| t.Shape[0] |] t.Shape[2..]

                let o =
                    {
                        Shape = shape
                        Values = alloc kind precision (kind = "spikes" && isBinary t) n (Shape.numel shape)
                    }

                arrays[(kind, name)] <- o
                o

        let mutable first = 0
        // Sequence samples [T, …] (one axis more than the teacher's input) run time-major [T, B, …].
        let timeMajor = sampleShape.Length = teacher.Architecture.InputShape.Length + 1

        while first < n do
            let count = min batchSize (n - first)

            Diff.noGrad (fun () ->
                use _ = TensorScope.Begin()
                let x = SampleSource.toTensor timeMajor source [| first .. first + count - 1 |]
                let out = Model.forward ctx teacher x
                let z = KdOutputs.stepLogits out.Logits
                let lo = get "logits" "logits" z
                logits <- Some lo
                store lo.Values first z

                for kind, m in [ "membrane", out.Membranes; "spikes", out.Spikes; "tap", out.Taps ] do
                    for KeyValue(name, t) in m do
                        let o = get kind name t

                        match o.Values, kind with
                        | Bits _, "spikes" when not (isBinary t) ->
                            Errors.fail (
                                sprintf
                                    "TeacherCache.build: spikes of '%s' were binary in the first batch but not at sample %d; build with a neuron that emits 0/1 spikes."
                                    name
                                    first
                            )
                        | _ -> ()

                        store o.Values first t)

            first <- first + count

        let pick kind =
            arrays
            |> Seq.filter (fun kv -> fst kv.Key = kind)
            |> Seq.map (fun kv -> snd kv.Key, kv.Value)
            |> Map.ofSeq

        {
            TeacherFingerprint = teacherFingerprint teacher probes
            DataFingerprint = dataFingerprint source
            Count = n
            Logits =
                match logits with
                | Some l -> l
                | None -> Errors.invalidArg "TeacherCache.build" "source" "an empty source" "at least one sample"
            Membranes = pick "membrane"
            Spikes = pick "spikes"
            Taps = pick "tap"
        }

    /// Whether the cache was built from this teacher (with these probes) and this data.
    let isValidFor (teacher: Model) (probes: ProbeRequest) (source: ISampleSource) (cache: TeacherCache) =
        cache.TeacherFingerprint = teacherFingerprint teacher { probes with FiringRates = false }
        && cache.DataFingerprint = dataFingerprint source

    /// The cache if it is still valid for this teacher and data, otherwise a freshly built one.
    let getOrBuild
        (precision: CachePrecision)
        (batchSize: int)
        (existing: TeacherCache option)
        (teacher: Model)
        (probes: ProbeRequest)
        (source: ISampleSource)
        =
        match existing with
        | Some c when isValidFor teacher probes source c -> c
        | _ -> build precision batchSize teacher probes source

    /// Reads samples back as a [T, B, …] tensor in the current tensor scope's pooled memory.
    let private gather (o: CachedOutput) (indices: int[]) =
        let steps = o.Shape[0]
        let inner = Shape.numel o.Shape[1..]
        let per = steps * inner
        let b = indices.Length
        let shape = Array.concat [ [| steps; b |]; o.Shape[1..] ]
        let storage = StorageAlloc.uninit (steps * b * inner)
        let dst = storage.Data

        for j in 0 .. b - 1 do
            let i = indices[j]

            for k in 0 .. steps - 1 do
                let at = (k * b + j) * inner
                let from = i * per + k * inner

                match o.Values with
                | Full a -> Array.blit a from dst at inner
                | Half a ->
                    System.Numerics.Tensors.TensorPrimitives.ConvertToSingle(
                        ReadOnlySpan<Half>(a, from, inner),
                        Span<float32>(dst, at, inner)
                    )
                | Bits a ->
                    for e in 0 .. inner - 1 do
                        let bit = int64 (from + e)

                        dst[at + e] <-
                            if (a[int (bit >>> 6)] >>> int (bit &&& 63L)) &&& 1UL <> 0UL then
                                1.0f
                            else
                                0.0f

        Tensor(storage, 0, shape, null)

    /// The teacher outputs of the given samples, as a live teacher run would give them:
    /// logits [T, B, K] ([1, B, K] for an ANN) and probes [T, B, …].
    let lookup (cache: TeacherCache) (indices: int[]) : KdOutputs =
        for i in indices do
            if i < 0 || i >= cache.Count then
                Errors.invalidArg "TeacherCache.lookup" "sample index" i (sprintf "an index in [0, %d)" cache.Count)

        {
            Logits = gather cache.Logits indices
            Membranes = cache.Membranes |> Map.map (fun _ o -> gather o indices)
            Spikes = cache.Spikes |> Map.map (fun _ o -> gather o indices)
            Taps = cache.Taps |> Map.map (fun _ o -> gather o indices)
        }
