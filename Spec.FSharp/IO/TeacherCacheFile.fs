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

    let private checkSize (what: string) (bytes: int64) =
        if bytes > int64 Int32.MaxValue then
            Errors.invalidArg
                "TeacherCacheFile.save"
                what
                (sprintf "%d bytes" bytes)
                "at most 2 GiB per output: cache fewer probes, use CachePrecision.Float16, or cache a subset"

    let private stored (name: string) (count: int) (o: CachedOutput) : StoredTensor =
        let shape = Array.append [| count |] o.Shape

        match o.Values with
        | Full a ->
            checkSize name (int64 a.Length * 4L)

            {
                Name = name
                DType = DType.F32
                Shape = shape
                Data = MemoryMarshal.AsBytes(ReadOnlySpan a).ToArray()
            }
        | Half a ->
            checkSize name (int64 a.Length * 2L)

            {
                Name = name
                DType = DType.F16
                Shape = shape
                Data = MemoryMarshal.AsBytes(ReadOnlySpan a).ToArray()
            }
        | Bits a ->
            let bits = int64 count * int64 (Shape.numel o.Shape)
            let bytes = (bits + 7L) / 8L
            checkSize name bytes
            let all = MemoryMarshal.AsBytes(ReadOnlySpan a)

            {
                Name = name
                DType = DType.I8
                Shape = [| int bytes |]
                Data = all.Slice(0, int bytes).ToArray()
            }

    /// Writes the cache atomically (temporary file, flush, rename).
    let save (path: string) (cache: TeacherCache) =
        if not BitConverter.IsLittleEndian then
            Errors.fail "TeacherCacheFile.save: the cache file layout is little-endian; this machine is not."

        let outputs =
            [
                yield "logits", cache.Logits
                for KeyValue(n, o) in cache.Membranes -> "membrane." + n, o
                for KeyValue(n, o) in cache.Spikes -> "spikes." + n, o
                for KeyValue(n, o) in cache.Taps -> "tap." + n, o
            ]

        let tensors = outputs |> List.map (fun (n, o) -> stored n cache.Count o)

        let metadata =
            Map
                [
                    yield "format", FormatName
                    yield "schema_version", string SchemaVersion
                    yield "teacher_fingerprint", cache.TeacherFingerprint
                    yield "data_fingerprint", cache.DataFingerprint
                    yield "count", string cache.Count
                    for n, o in outputs do
                        match o.Values with
                        | Bits _ -> yield "bits." + n, showShape o.Shape
                        | _ -> ()
                ]

        SafeTensors.write path tensors metadata

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

        let outputs =
            file.Tensors
            |> List.map (fun s ->
                let bitShape =
                    Map.tryFind ("bits." + s.Name) meta
                    |> Option.map (parseShape path ("bits." + s.Name))

                s.Name, ofStored path count bitShape s)

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
