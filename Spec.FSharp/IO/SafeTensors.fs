namespace SnnSpec.IO

open System
open System.Buffers.Binary
open System.Collections.Generic
open System.IO
open System.Runtime.InteropServices
open System.Text
open System.Text.Json
open SnnSpec

/// Raised for a checkpoint file that cannot be read: truncated, a header length larger than the
/// file, malformed header JSON, an unknown dtype, data offsets that overlap, leave holes or run
/// past the end, or metadata SnnSpec cannot interpret. <c>File</c> is the path, <c>Offset</c> the
/// byte offset where the problem was found, and the message ends with how to fix it.
type CheckpointFormatException(file: string, offset: int64, problem: string, fix: string) =
    inherit SnnSpecException(sprintf "%s: at byte offset %d: %s. Fix: %s" file offset problem fix)

    member _.File = file
    member _.Offset = offset
    member _.Problem = problem
    member _.Fix = fix

/// The element types a safetensors file can hold in SnnSpec. Names in the header are the
/// safetensors spellings ("F32", "F16", "BF16", "I8", "I32"); every value is little-endian.
[<RequireQualifiedAccess>]
type DType =
    /// IEEE-754 binary32, 4 bytes.
    | F32
    /// IEEE-754 binary16, 2 bytes.
    | F16
    /// bfloat16 (the upper half of a binary32), 2 bytes.
    | BF16
    /// Two's-complement signed byte.
    | I8
    /// Two's-complement 32-bit integer, 4 bytes.
    | I32

module DType =
    /// Bytes per element.
    let size (d: DType) =
        match d with
        | DType.F32
        | DType.I32 -> 4
        | DType.F16
        | DType.BF16 -> 2
        | DType.I8 -> 1

    /// The safetensors spelling.
    let name (d: DType) =
        match d with
        | DType.F32 -> "F32"
        | DType.F16 -> "F16"
        | DType.BF16 -> "BF16"
        | DType.I8 -> "I8"
        | DType.I32 -> "I32"

    let all = [ DType.F32; DType.F16; DType.BF16; DType.I8; DType.I32 ]

    let tryParse (s: string) =
        all |> List.tryFind (fun d -> name d = s)

    let isFloat (d: DType) =
        match d with
        | DType.F32
        | DType.F16
        | DType.BF16 -> true
        | DType.I8
        | DType.I32 -> false

/// One tensor as stored: its name, element type, shape and raw little-endian bytes
/// (<c>Data.Length</c> = ∏Shape × DType.size).
type StoredTensor =
    {
        Name: string
        DType: DType
        Shape: int[]
        Data: byte[]
    }

module StoredTensor =
    let private numel (shape: int[]) =
        shape |> Array.fold (fun acc d -> acc * int64 d) 1L

    let private checkShape (op: string) (shape: int[]) (count: int) =
        if shape |> Array.exists (fun d -> d < 0) then
            Errors.invalidArg op "shape" (Errors.showShape shape) "non-negative dimensions"

        if numel shape <> int64 count then
            Errors.invalidArg
                op
                "shape"
                (Errors.showShape shape)
                (sprintf "a shape with as many elements as the data (%d)" count)

    /// Round to nearest even, NaN kept quiet.
    let private toBf16 (f: float32) : uint16 =
        let b = BitConverter.SingleToUInt32Bits f

        if Single.IsNaN f then
            uint16 ((b >>> 16) ||| 0x40u)
        else
            uint16 ((b + 0x7FFFu + ((b >>> 16) &&& 1u)) >>> 16)

    /// Float values stored as F32, F16 or BF16 (rounded to nearest even).
    let ofFloats (name: string) (dtype: DType) (shape: int[]) (values: float32[]) =
        checkShape "StoredTensor.ofFloats" shape values.Length
        let data = Array.zeroCreate<byte>(values.Length * DType.size dtype)

        match dtype with
        | DType.F32 ->
            if BitConverter.IsLittleEndian then
                MemoryMarshal.AsBytes(ReadOnlySpan values).CopyTo(Span data)
            else
                for i in 0 .. values.Length - 1 do
                    BinaryPrimitives.WriteSingleLittleEndian(Span(data, 4 * i, 4), values[i])
        | DType.F16 ->
            for i in 0 .. values.Length - 1 do
                BinaryPrimitives.WriteHalfLittleEndian(Span(data, 2 * i, 2), Half.op_Explicit values[i])
        | DType.BF16 ->
            for i in 0 .. values.Length - 1 do
                BinaryPrimitives.WriteUInt16LittleEndian(Span(data, 2 * i, 2), toBf16 values[i])
        | DType.I8
        | DType.I32 ->
            Errors.invalidArg
                "StoredTensor.ofFloats"
                "dtype"
                (DType.name dtype)
                "F32, F16 or BF16 (store integer codes with ofInt8 or ofInt32)"

        {
            Name = name
            DType = dtype
            Shape = Array.copy shape
            Data = data
        }

    /// A tensor's values as F32.
    let ofTensor (name: string) (t: Tensor) =
        ofFloats name DType.F32 t.Shape (t.ToArray())

    /// Signed 8-bit integer codes (e.g. quantized weights).
    let ofInt8 (name: string) (shape: int[]) (values: sbyte[]) =
        checkShape "StoredTensor.ofInt8" shape values.Length

        {
            Name = name
            DType = DType.I8
            Shape = Array.copy shape
            Data = Array.init values.Length (fun i -> byte values[i])
        }

    /// 32-bit integer values (e.g. accumulator biases or codes wider than 8 bits).
    let ofInt32 (name: string) (shape: int[]) (values: int[]) =
        checkShape "StoredTensor.ofInt32" shape values.Length
        let data = Array.zeroCreate<byte>(values.Length * 4)

        for i in 0 .. values.Length - 1 do
            BinaryPrimitives.WriteInt32LittleEndian(Span(data, 4 * i, 4), values[i])

        {
            Name = name
            DType = DType.I32
            Shape = Array.copy shape
            Data = data
        }

    /// Element count.
    let count (s: StoredTensor) = s.Data.Length / DType.size s.DType

    /// The values as float32 whatever the dtype (integers converted exactly up to 2²⁴).
    let toFloats (s: StoredTensor) : float32[] =
        let n = count s
        let d = s.Data

        match s.DType with
        | DType.F32 ->
            if BitConverter.IsLittleEndian then
                MemoryMarshal.Cast<byte, float32>(ReadOnlySpan d).ToArray()
            else
                Array.init n (fun i -> BinaryPrimitives.ReadSingleLittleEndian(ReadOnlySpan(d, 4 * i, 4)))
        | DType.F16 ->
            Array.init n (fun i -> float32 (BinaryPrimitives.ReadHalfLittleEndian(ReadOnlySpan(d, 2 * i, 2))))
        | DType.BF16 ->
            Array.init n (fun i ->
                BitConverter.UInt32BitsToSingle(
                    uint32 (BinaryPrimitives.ReadUInt16LittleEndian(ReadOnlySpan(d, 2 * i, 2)))
                    <<< 16
                ))
        | DType.I8 -> Array.init n (fun i -> float32 (sbyte d[i]))
        | DType.I32 ->
            Array.init n (fun i -> float32 (BinaryPrimitives.ReadInt32LittleEndian(ReadOnlySpan(d, 4 * i, 4))))

    /// The values as a float32 tensor.
    let toTensor (s: StoredTensor) = Tensor.ofArray s.Shape (toFloats s)

    /// The codes of an I8 tensor.
    let toInt8 (s: StoredTensor) : sbyte[] =
        if s.DType <> DType.I8 then
            Errors.invalidArg "StoredTensor.toInt8" s.Name (DType.name s.DType) "an I8 tensor"

        Array.map sbyte s.Data

    /// The values of an I32 tensor.
    let toInt32 (s: StoredTensor) : int[] =
        if s.DType <> DType.I32 then
            Errors.invalidArg "StoredTensor.toInt32" s.Name (DType.name s.DType) "an I32 tensor"

        Array.init (count s) (fun i -> BinaryPrimitives.ReadInt32LittleEndian(ReadOnlySpan(s.Data, 4 * i, 4)))

/// The content of a safetensors file: tensors in file order and the "__metadata__" string map.
type SafeTensorsFile =
    {
        Tensors: StoredTensor list
        Metadata: Map<string, string>
    }

/// The safetensors format (https://github.com/huggingface/safetensors): an unsigned 64-bit
/// little-endian header length N, then N bytes of UTF-8 JSON (SnnSpec pads it with spaces so the
/// data starts 8-byte aligned), then the data buffer. The JSON object maps each tensor name to
/// <c>{"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}</c> with offsets relative to the
/// start of the data buffer; the tensors tile the buffer exactly (no overlap, no hole, nothing after
/// the last one). The optional key <c>"__metadata__"</c> maps strings to strings.
module SafeTensors =
    /// Headers above this size are refused (the reference implementation's limit).
    let maxHeaderBytes = 100L * 1024L * 1024L

    let private fail (file: string) (offset: int64) (problem: string) (fix: string) : 'a =
        raise (CheckpointFormatException(file, offset, problem, fix))

    let private damaged =
        "the file is damaged or incomplete; write it again or restore an intact copy"

    /// The header JSON followed by its space padding.
    let private header (tensors: StoredTensor list) (metadata: Map<string, string>) =
        use ms = new MemoryStream()

        do
            use w = new Utf8JsonWriter(ms)
            w.WriteStartObject()

            if not metadata.IsEmpty then
                w.WriteStartObject "__metadata__"

                for KeyValue(k, v) in metadata do
                    w.WriteString(k, v)

                w.WriteEndObject()

            let mutable offset = 0L

            for t in tensors do
                w.WriteStartObject t.Name
                w.WriteString("dtype", DType.name t.DType)
                w.WriteStartArray "shape"

                for d in t.Shape do
                    w.WriteNumberValue d

                w.WriteEndArray()
                w.WriteStartArray "data_offsets"
                w.WriteNumberValue offset
                offset <- offset + t.Data.LongLength
                w.WriteNumberValue offset
                w.WriteEndArray()
                w.WriteEndObject()

            w.WriteEndObject()

        let json = ms.ToArray()
        let padded = (json.Length + 8 + 7) / 8 * 8 - 8
        Array.append json (Array.create (padded - json.Length) (byte ' '))

    let private validateForWrite (tensors: StoredTensor list) (metadata: Map<string, string>) =
        let names = HashSet<string>()

        for t in tensors do
            if t.Name = "__metadata__" || String.IsNullOrEmpty t.Name then
                Errors.invalidArg "SafeTensors.write" "name" t.Name "a non-empty name other than __metadata__"

            if not (names.Add t.Name) then
                Errors.invalidArg "SafeTensors.write" "name" t.Name "tensor names that are unique within a file"

            let n = t.Shape |> Array.fold (fun acc d -> acc * int64 d) 1L

            if
                t.Shape |> Array.exists (fun d -> d < 0)
                || n * int64 (DType.size t.DType) <> t.Data.LongLength
            then
                Errors.invalidArg
                    "SafeTensors.write"
                    t.Name
                    (sprintf "%s with %d bytes" (Errors.showShape t.Shape) t.Data.Length)
                    (sprintf "∏shape × %d bytes of data for %s" (DType.size t.DType) (DType.name t.DType))

        for KeyValue(k, v) in metadata do
            if isNull k || isNull v then
                Errors.invalidArg "SafeTensors.write" "metadata" k "non-null keys and values"

    /// Writes the file bytes to a stream.
    let writeTo (stream: Stream) (tensors: StoredTensor list) (metadata: Map<string, string>) =
        validateForWrite tensors metadata
        let h = header tensors metadata
        let len = Array.zeroCreate<byte> 8
        BinaryPrimitives.WriteUInt64LittleEndian(Span len, uint64 h.Length)
        stream.Write(len, 0, 8)
        stream.Write(h, 0, h.Length)

        for t in tensors do
            stream.Write(t.Data, 0, t.Data.Length)

    /// The file as bytes.
    let toBytes (tensors: StoredTensor list) (metadata: Map<string, string>) =
        use ms = new MemoryStream()
        writeTo ms tensors metadata
        ms.ToArray()

    /// Writes a file atomically: the bytes go to a temporary file in the same directory, are
    /// flushed to the disk, and the temporary file is renamed over <c>path</c>. A crash leaves
    /// either the old file or the new one, never a partial file at <c>path</c>.
    let write (path: string) (tensors: StoredTensor list) (metadata: Map<string, string>) =
        validateForWrite tensors metadata
        let full = Path.GetFullPath path
        let dir = Path.GetDirectoryName full
        Directory.CreateDirectory dir |> ignore

        let tmp =
            Path.Combine(dir, sprintf ".%s.%s.tmp" (Path.GetFileName full) (Guid.NewGuid().ToString "N"))

        try
            do
                use fs =
                    new FileStream(tmp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 <<< 16)

                writeTo fs tensors metadata
                fs.Flush true

            File.Move(tmp, full, true)
        with _ ->
            (try
                File.Delete tmp
             with _ ->
                 ())

            reraise ()

    let private readExactly (file: string) (s: Stream) (buf: byte[]) (at: int64) =
        let mutable got = 0

        while got < buf.Length do
            let n = s.Read(buf, got, buf.Length - got)

            if n <= 0 then
                fail
                    file
                    (at + int64 got)
                    (sprintf "the file ends after %d of the %d bytes expected here" got buf.Length)
                    damaged

            got <- got + n

    type private Entry =
        {
            Name: string
            DType: DType
            Shape: int[]
            Begin: int64
            End: int64
        }

    let private parseHeader (file: string) (json: byte[]) (dataLength: int64) =
        let at = 8L
        let chars = Array.zeroCreate<char> json.Length

        let mutable read = 0
        let mutable written = 0

        if
            Unicode.Utf8.ToUtf16(ReadOnlySpan json, Span chars, &read, &written, false, true)
            <> Buffers.OperationStatus.Done
        then
            fail file (at + int64 read) "the header is not valid UTF-8" damaged

        /// Where an entry's quoted name first appears in the header.
        let offsetOf (name: string) =
            let key = Encoding.UTF8.GetBytes(JsonSerializer.Serialize name)

            match ReadOnlySpan(json).IndexOf(ReadOnlySpan key) with
            | -1 -> at
            | i -> at + int64 i

        let doc =
            try
                JsonDocument.Parse(ReadOnlyMemory json, JsonDocumentOptions(MaxDepth = 16))
            with
            | :? JsonException as e ->
                let pos = e.BytePositionInLine |> Option.ofNullable |> Option.defaultValue 0L

                fail file (at + pos) (sprintf "the header is not valid JSON (%s)" e.Message) damaged
            | :? ArgumentException as e ->
                fail file at (sprintf "the header is not valid UTF-8 JSON (%s)" e.Message) damaged

        use doc = doc
        let root = doc.RootElement

        if root.ValueKind <> JsonValueKind.Object then
            fail file at (sprintf "the header is a JSON %O, not an object" root.ValueKind) damaged

        let seen = HashSet<string>()
        let entries = List<Entry>()
        let mutable metadata = Map.empty

        for prop in root.EnumerateObject() do
            let name = prop.Name

            if not (seen.Add name) then
                fail file at (sprintf "the header names %A twice" name) damaged

            let v = prop.Value

            let bad problem =
                fail file (offsetOf name) (sprintf "entry %A: %s" name problem) damaged

            if name = "__metadata__" then
                if v.ValueKind <> JsonValueKind.Object then
                    bad "is not an object of strings"

                for m in v.EnumerateObject() do
                    if m.Value.ValueKind <> JsonValueKind.String then
                        bad (sprintf "the value of %A is not a string" m.Name)

                    if metadata.ContainsKey m.Name then
                        bad (sprintf "names %A twice" m.Name)

                    metadata <- metadata.Add(m.Name, m.Value.GetString())
            else
                if v.ValueKind <> JsonValueKind.Object then
                    bad "is not an object with dtype, shape and data_offsets"

                let field (key: string) (kind: JsonValueKind) =
                    match v.TryGetProperty key with
                    | true, f when f.ValueKind = kind -> f
                    | true, f -> bad (sprintf "%s is a JSON %O, expected %O" key f.ValueKind kind)
                    | _ -> bad (sprintf "has no %s" key)

                let dtypeText = (field "dtype" JsonValueKind.String).GetString()

                let dtype =
                    match DType.tryParse dtypeText with
                    | Some d -> d
                    | None ->
                        bad (
                            sprintf
                                "dtype %A is not supported (SnnSpec reads %s)"
                                dtypeText
                                (String.Join(", ", DType.all |> List.map DType.name))
                        )

                let ints (key: string) =
                    let arr = field key JsonValueKind.Array

                    [|
                        for e in arr.EnumerateArray() do
                            match e.ValueKind, e.TryGetInt64() with
                            | JsonValueKind.Number, (true, x) when x >= 0L -> yield x
                            | _ -> bad (sprintf "%s holds %s, not a non-negative integer" key (e.GetRawText()))
                    |]

                let shape = ints "shape"

                if shape |> Array.exists (fun d -> d > int64 Int32.MaxValue) then
                    bad "a dimension exceeds 2³¹ − 1"

                let offsets = ints "data_offsets"

                if offsets.Length <> 2 then
                    bad (sprintf "data_offsets has %d numbers, expected [begin, end]" offsets.Length)

                let b, e = offsets[0], offsets[1]

                if b > e || e > dataLength then
                    fail
                        file
                        (if e > dataLength then
                             at + int64 json.Length + dataLength
                         else
                             offsetOf name)
                        (sprintf
                            "entry %A: data_offsets [%d, %d] do not lie within the %d-byte data buffer"
                            name
                            b
                            e
                            dataLength)
                        damaged

                // The element count is bounded by the byte span before it can overflow.
                let mutable numel = 1L
                let size = int64 (DType.size dtype)

                for d in shape do
                    if numel <> 0L && d > (e - b) / size / numel + 1L then
                        bad (sprintf "shape %A needs more bytes than data_offsets [%d, %d] give" shape b e)

                    numel <- numel * d

                if numel * size <> e - b then
                    bad (
                        sprintf
                            "shape %A of %s needs %d bytes but data_offsets [%d, %d] give %d"
                            shape
                            dtypeText
                            (numel * size)
                            b
                            e
                            (e - b)
                    )

                entries.Add
                    {
                        Name = name
                        DType = dtype
                        Shape = shape |> Array.map int
                        Begin = b
                        End = e
                    }

        let sorted = entries |> Seq.sortBy (fun e -> e.Begin, e.End) |> Array.ofSeq
        let mutable pos = 0L

        for e in sorted do
            if e.Begin <> pos then
                fail
                    file
                    (at + int64 json.Length + min e.Begin pos)
                    (if e.Begin < pos then
                         sprintf "tensor %A overlaps the tensor before it in the data buffer" e.Name
                     else
                         sprintf
                             "%d bytes of the data buffer before tensor %A belong to no tensor"
                             (e.Begin - pos)
                             e.Name)
                    damaged

            pos <- e.End

        if pos <> dataLength then
            fail
                file
                (at + int64 json.Length + pos)
                (sprintf "%d bytes after the last tensor belong to no tensor" (dataLength - pos))
                damaged

        entries, metadata

    /// Reads a file from a stream of known length (<c>file</c> names it in errors). Every size is
    /// checked against the length before anything is allocated, so no input makes the reader
    /// allocate much more than the file's size.
    let readFrom (file: string) (s: Stream) (length: int64) : SafeTensorsFile =
        if length < 8L then
            fail file 0L (sprintf "the file has %d bytes, fewer than the 8-byte header length" length) damaged

        let lenBytes = Array.zeroCreate<byte> 8
        readExactly file s lenBytes 0L
        let n = BinaryPrimitives.ReadUInt64LittleEndian(ReadOnlySpan lenBytes)

        if n > uint64 (length - 8L) then
            fail
                file
                0L
                (sprintf "the header length is %d bytes but only %d bytes follow" n (length - 8L))
                "the file is truncated or not a safetensors file; write it again or restore an intact copy"

        if n > uint64 maxHeaderBytes then
            fail file 0L (sprintf "the header length %d exceeds the %d-byte limit" n maxHeaderBytes) damaged

        if n < 2UL then
            fail file 8L "the header is too short to be a JSON object" damaged

        let json = Array.zeroCreate<byte>(int n)
        readExactly file s json 8L

        if json[0] <> byte '{' then
            fail file 8L (sprintf "the header starts with byte 0x%02x, not '{'" json[0]) damaged

        let dataStart = 8L + int64 n
        let entries, metadata = parseHeader file json (length - dataStart)

        let byOffset = entries |> Seq.sortBy (fun e -> e.Begin) |> Array.ofSeq
        let data = Dictionary<string, byte[]>()

        for e in byOffset do
            let buf = Array.zeroCreate<byte>(int (e.End - e.Begin))
            readExactly file s buf (dataStart + e.Begin)
            data[e.Name] <- buf

        {
            Tensors =
                [
                    for e in entries ->
                        {
                            Name = e.Name
                            DType = e.DType
                            Shape = e.Shape
                            Data = data[e.Name]
                        }
                ]
            Metadata = metadata
        }

    /// Reads a file.
    let read (path: string) : SafeTensorsFile =
        if not (File.Exists path) then
            fail path 0L "the file does not exist" "check the path"

        use fs =
            try
                new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 <<< 16)
            with :? IOException as e ->
                fail path 0L (sprintf "the file cannot be opened (%s)" e.Message) "check the path and permissions"

        readFrom path fs fs.Length

    /// Reads file bytes held in memory.
    let ofBytes (name: string) (bytes: byte[]) =
        use ms = new MemoryStream(bytes, false)
        readFrom name ms bytes.LongLength
