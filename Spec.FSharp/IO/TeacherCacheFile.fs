namespace SnnSpec.IO

open System
open System.IO
open System.Runtime.InteropServices
open SnnSpec
open SnnSpec.Data
open SnnSpec.Training

/// Where a teacher cache came from.
[<RequireQualifiedAccess>]
type CacheOrigin =
    /// Read from a file written by an earlier run with the same teacher and data.
    | Loaded
    /// Computed now (no file, or the file was unreadable) and written for the next run.
    | Built
    /// Computed now because the file was damaged; the damaged file was replaced. The text says why.
    | Rebuilt of reason: string

/// The result of <c>TeacherCacheFile.getOrBuild</c>.
type CacheFileResult =
    {
        Cache: TeacherCache
        Path: string
        Origin: CacheOrigin
    }

/// A teacher cache on disk, so a frozen teacher's outputs survive across runs as well as epochs.
/// The file is safetensors: logits as F32 [N, T, K]; membranes and taps as F32 or F16 [N, T, …];
/// spikes packed 8 per byte (I8 [⌈N·T·…/8⌉], little-endian bit order, per-sample shape in the
/// metadata); the metadata also carries the teacher and data fingerprints, so a file is only ever
/// used for the teacher and data it was computed from. Each output must fit in 2 GiB.
module TeacherCacheFile =
    /// The metadata value of "format".
    [<Literal>]
    let FormatName = "snnspec.teacher-cache"

    /// Bumped when the layout changes; older files are rebuilt, never misread.
    [<Literal>]
    let SchemaVersion = 1

    let private kinds = [ "logits"; "membrane"; "spikes"; "tap" ]

    /// The file name for a teacher and data fingerprint pair at a precision: distinct teachers,
    /// data sets or precisions never share a file.
    let fileName (teacherFingerprint: string) (dataFingerprint: string) (precision: CachePrecision) =
        let p =
            match precision with
            | CachePrecision.Float32 -> "f32"
            | CachePrecision.Float16 -> "f16"

        sprintf "teacher-%s-data-%s-%s.safetensors" teacherFingerprint[..15] dataFingerprint[..15] p

    let private showShape (s: int[]) =
        "[" + String.Join(",", s |> Array.map string) + "]"

    let private parseShape (file: string) (key: string) (s: string) =
        let fail () =
            raise (
                CheckpointFormatException(
                    file,
                    0L,
                    sprintf "metadata '%s' is '%s', not a shape like [4,10]" key s,
                    "delete the file; the next run rebuilds it"
                )
            )

        let s = s.Trim()

        if not (s.StartsWith "[" && s.EndsWith "]") then
            fail ()

        let body = s[1 .. s.Length - 2]

        if body.Trim() = "" then
            [||]
        else
            body.Split ','
            |> Array.map (fun p ->
                match Int32.TryParse(p.Trim()) with
                | true, v when v > 0 -> v
                | _ -> fail ())

    /// The raw little-endian bytes of an output (packed spikes: only the bytes holding bits).
    let private rawBytes (count: int) (o: CachedOutput) : byte[] =
        match o.Values with
        | Full a -> MemoryMarshal.AsBytes(ReadOnlySpan a).ToArray()
        | Half a -> MemoryMarshal.AsBytes(ReadOnlySpan a).ToArray()
        | Bits a ->
            let bits = int64 count * int64 (Shape.numel o.Shape)
            let bytes = int ((bits + 7L) / 8L)
            MemoryMarshal.AsBytes(ReadOnlySpan a).Slice(0, bytes).ToArray()

    let private layout (o: CachedOutput) =
        match o.Values with
        | Full _ -> "f32"
        | Half _ -> "f16"
        | Bits _ -> "bits"

    /// The byte size of an output on disk.
    let private byteSize (count: int) (o: CachedOutput) =
        let total = int64 count * int64 (Shape.numel o.Shape)

        match o.Values with
        | Full _ -> total * 4L
        | Half _ -> total * 2L
        | Bits _ -> (total + 7L) / 8L

    /// Bytes [at, at + len) of an output's raw bytes; at and len are multiples of the element size
    /// (the last part may end early), so arrays past 2 GiB of bytes are sliced by elements.
    let private slice (o: CachedOutput) (at: int64) (len: int) : byte[] =
        let part (a: 'T[]) (size: int) =
            let first = int (at / int64 size)
            let n = min ((len + size - 1) / size) (a.Length - first)
            MemoryMarshal.AsBytes(ReadOnlySpan(a, first, n)).Slice(0, len).ToArray()

        match o.Values with
        | Full a -> part a 4
        | Half a -> part a 2
        | Bits a -> part a 8

    /// One output as stored tensors and metadata: a typed tensor [N, T, …] (packed spikes: I8
    /// bytes) when it fits in partBytes, otherwise raw I8 parts "<name>.part<k>" of at most
    /// partBytes each, described by "parts.", "layout." and "shape." metadata.
    let private stored (partBytes: int) (name: string) (count: int) (o: CachedOutput) =
        let size = byteSize count o

        if size <= int64 partBytes then
            let data = rawBytes count o

            let dtype, shape =
                match o.Values with
                | Full _ -> DType.F32, Array.append [| count |] o.Shape
                | Half _ -> DType.F16, Array.append [| count |] o.Shape
                | Bits _ -> DType.I8, [| data.Length |]

            let meta =
                match o.Values with
                | Bits _ -> [ "bits." + name, showShape o.Shape ]
                | _ -> []

            [
                {
                    Name = name
                    DType = dtype
                    Shape = shape
                    Data = data
                }
            ],
            meta
        else
            // Parts hold whole elements (8 bytes divides every element size).
            let partBytes = max 8 (partBytes - partBytes % 8)
            let parts = int ((size + int64 partBytes - 1L) / int64 partBytes)

            let tensors =
                [
                    for k in 0 .. parts - 1 do
                        let at = int64 k * int64 partBytes
                        let len = int (min (int64 partBytes) (size - at))

                        {
                            Name = sprintf "%s.part%d" name k
                            DType = DType.I8
                            Shape = [| len |]
                            Data = slice o at len
                        }
                ]

            tensors,
            [
                "parts." + name, string parts
                "layout." + name, layout o
                "shape." + name, showShape o.Shape
            ]

    /// Writes the cache atomically (temporary file, flush, rename); outputs larger than partBytes
    /// are split into raw parts of at most that size.
    let saveWith (partBytes: int) (path: string) (cache: TeacherCache) =
        if partBytes < 1 then
            Errors.invalidArg "TeacherCacheFile.saveWith" "partBytes" partBytes "a positive part size"

        if not BitConverter.IsLittleEndian then
            Errors.fail "TeacherCacheFile.save: the cache file layout is little-endian; this machine is not."

        let outputs =
            [
                yield "logits", cache.Logits
                for KeyValue(n, o) in cache.Membranes -> "membrane." + n, o
                for KeyValue(n, o) in cache.Spikes -> "spikes." + n, o
                for KeyValue(n, o) in cache.Taps -> "tap." + n, o
            ]

        let pieces = outputs |> List.map (fun (n, o) -> stored partBytes n cache.Count o)
        let tensors = pieces |> List.collect fst

        let metadata =
            Map
                [
                    yield "format", FormatName
                    yield "schema_version", string SchemaVersion
                    yield "teacher_fingerprint", cache.TeacherFingerprint
                    yield "data_fingerprint", cache.DataFingerprint
                    yield "count", string cache.Count
                    yield! pieces |> List.collect snd
                ]

        SafeTensors.write path tensors metadata

    /// Writes the cache atomically, in parts of at most 1 GiB per output.
    let save (path: string) (cache: TeacherCache) = saveWith (1 <<< 30) path cache

    let private ofStored (file: string) (count: int) (bitShape: int[] option) (s: StoredTensor) : CachedOutput =
        let bad problem =
            raise (CheckpointFormatException(file, 0L, problem, "delete the file; the next run rebuilds it"))

        match bitShape with
        | Some shape ->
            if s.DType <> DType.I8 then
                bad (sprintf "packed spikes '%s' are %s, not I8" s.Name (DType.name s.DType))

            let bits = int64 count * int64 (Shape.numel shape)

            if int64 s.Data.Length <> (bits + 7L) / 8L then
                bad (
                    sprintf
                        "packed spikes '%s' hold %d bytes; %d samples of %s need %d"
                        s.Name
                        s.Data.Length
                        count
                        (showShape shape)
                        ((bits + 7L) / 8L)
                )

            let words = Array.zeroCreate<uint64>(int ((bits + 63L) / 64L))
            s.Data.AsSpan().CopyTo(MemoryMarshal.AsBytes(Span words))
            { Shape = shape; Values = Bits words }
        | None ->
            if s.Shape.Length < 2 || s.Shape[0] <> count then
                bad (sprintf "'%s' has shape %s; expected [%d, T, …]" s.Name (showShape s.Shape) count)

            let shape = s.Shape[1..]

            match s.DType with
            | DType.F32 ->
                let a = Array.zeroCreate<float32>(s.Data.Length / 4)
                s.Data.AsSpan().CopyTo(MemoryMarshal.AsBytes(Span a))
                { Shape = shape; Values = Full a }
            | DType.F16 ->
                let a = Array.zeroCreate<Half>(s.Data.Length / 2)
                s.Data.AsSpan().CopyTo(MemoryMarshal.AsBytes(Span a))
                { Shape = shape; Values = Half a }
            | d -> bad (sprintf "'%s' is %s; cached values are F32 or F16" s.Name (DType.name d))

    /// Reads a cache file, checking its format, schema version and every output's size. A damaged
    /// or foreign file raises <c>CheckpointFormatException</c> naming the file and the problem.
    let load (path: string) : TeacherCache =
        let file = SafeTensors.read path
        let meta = file.Metadata

        let bad problem =
            raise (CheckpointFormatException(path, 0L, problem, "delete the file; the next run rebuilds it"))

        let get key =
            match Map.tryFind key meta with
            | Some v -> v
            | None -> bad (sprintf "the metadata lacks '%s'; this is not a teacher cache file" key)

        if get "format" <> FormatName then
            bad (sprintf "format is '%s', not '%s'" (get "format") FormatName)

        if get "schema_version" <> string SchemaVersion then
            bad (sprintf "schema version %s; this SnnSpec reads version %d" (get "schema_version") SchemaVersion)

        let count =
            match Int32.TryParse(get "count") with
            | true, c when c > 0 -> c
            | _ -> bad (sprintf "count '%s' is not a positive integer" (get "count"))

        // Outputs split into raw parts: "<name>.part<k>" with "parts.", "layout.", "shape." metadata.
        let split =
            meta
            |> Map.toList
            |> List.choose (fun (k, v) ->
                if k.StartsWith "parts." then
                    Some(k.Substring 6, v)
                else
                    None)

        let partNames = Collections.Generic.HashSet<string>()

        let joined =
            split
            |> List.map (fun (name, partsText) ->
                let parts =
                    match Int32.TryParse partsText with
                    | true, p when p > 0 -> p
                    | _ -> bad (sprintf "parts.%s is '%s', not a positive count" name partsText)

                let shape = parseShape path ("shape." + name) (get ("shape." + name))
                let total = int64 count * int64 (Shape.numel shape)

                let pieces =
                    [
                        for k in 0 .. parts - 1 do
                            let n = sprintf "%s.part%d" name k
                            partNames.Add n |> ignore

                            match file.Tensors |> List.tryFind (fun t -> t.Name = n) with
                            | Some t -> t.Data
                            | None -> bad (sprintf "part '%s' of '%s' is missing" n name)
                    ]

                let size = pieces |> List.sumBy (fun d -> int64 d.Length)

                let fill (dst: 'T[]) (elemSize: int) =
                    if size <> total * int64 elemSize then
                        bad (
                            sprintf
                                "'%s' holds %d bytes in its parts; %d samples of %s need %d"
                                name
                                size
                                count
                                (showShape shape)
                                (total * int64 elemSize)
                        )

                    let mutable at = 0L

                    for d in pieces do
                        let first = int (at / int64 elemSize)
                        let n = min ((d.Length + elemSize - 1) / elemSize) (dst.Length - first)
                        d.AsSpan().CopyTo(MemoryMarshal.AsBytes(Span(dst, first, n)))
                        at <- at + int64 d.Length

                    dst

                let values =
                    match get ("layout." + name) with
                    | "f32" -> Full(fill (Array.zeroCreate<float32>(int total)) 4)
                    | "f16" -> Half(fill (Array.zeroCreate<Half>(int total)) 2)
                    | "bits" ->
                        let words = Array.zeroCreate<uint64>(int ((total + 63L) / 64L))
                        let bytes = (total + 7L) / 8L

                        if size <> bytes then
                            bad (
                                sprintf
                                    "'%s' holds %d bytes of packed spikes; %d samples of %s need %d"
                                    name
                                    size
                                    count
                                    (showShape shape)
                                    bytes
                            )

                        let mutable at = 0L

                        for d in pieces do
                            let first = int (at / 8L)
                            let n = min ((d.Length + 7) / 8) (words.Length - first)
                            d.AsSpan().CopyTo(MemoryMarshal.AsBytes(Span(words, first, n)))
                            at <- at + int64 d.Length

                        Bits words
                    | other -> bad (sprintf "layout.%s is '%s', not f32, f16 or bits" name other)

                name, { Shape = shape; Values = values })

        let outputs =
            (file.Tensors
             |> List.filter (fun s -> not (partNames.Contains s.Name))
             |> List.map (fun s ->
                 let bitShape =
                     Map.tryFind ("bits." + s.Name) meta
                     |> Option.map (parseShape path ("bits." + s.Name))

                 s.Name, ofStored path count bitShape s))
            @ joined

        let logits =
            match outputs |> List.tryFind (fun (n, _) -> n = "logits") with
            | Some(_, o) -> o
            | None -> bad "the file has no 'logits' tensor"

        let pick (kind: string) =
            outputs
            |> List.choose (fun (n, o) ->
                if n.StartsWith(kind + ".") then
                    Some(n.Substring(kind.Length + 1), o)
                else
                    None)
            |> Map.ofList

        for n, _ in outputs do
            if n <> "logits" && not (kinds |> List.exists (fun k -> n.StartsWith(k + "."))) then
                bad (sprintf "unexpected tensor '%s'" n)

        {
            TeacherFingerprint = get "teacher_fingerprint"
            DataFingerprint = get "data_fingerprint"
            Count = count
            Logits = logits
            Membranes = pick "membrane"
            Spikes = pick "spikes"
            Taps = pick "tap"
        }

    /// The cache for this teacher, probes and data from <c>directory</c> when an earlier run left
    /// one (matched by both fingerprints), otherwise built with <c>TeacherCache.build</c> and saved
    /// there. A damaged file is replaced, and the result says so.
    let getOrBuild
        (directory: string)
        (precision: CachePrecision)
        (batchSize: int)
        (teacher: Model)
        (probes: ProbeRequest)
        (source: ISampleSource)
        : CacheFileResult =
        let probes = { probes with FiringRates = false }
        let tf = TeacherCache.teacherFingerprint teacher probes
        let df = TeacherCache.dataFingerprint source
        let path = Path.Combine(directory, fileName tf df precision)

        let build origin =
            let c = TeacherCache.build precision batchSize teacher probes source
            save path c

            {
                Cache = c
                Path = path
                Origin = origin
            }

        if File.Exists path then
            let attempt =
                try
                    Ok(load path)
                with
                | :? CheckpointFormatException as e -> Error e.Message
                | :? IOException as e -> Error e.Message

            match attempt with
            | Ok c when c.TeacherFingerprint = tf && c.DataFingerprint = df && c.Count = source.Count ->
                {
                    Cache = c
                    Path = path
                    Origin = CacheOrigin.Loaded
                }
            | Ok _ -> build (CacheOrigin.Rebuilt "its fingerprints or sample count differ from its name")
            | Error why -> build (CacheOrigin.Rebuilt why)
        else
            build CacheOrigin.Built
