namespace SnnSpec.Data

open System
open System.IO
open System.IO.Compression
open SnnSpec

/// Raised by every SnnSpec reader for a file it cannot accept: truncated, wrong magic number, header
/// sizes that disagree with the file length, labels out of range, unknown packet types, checksum
/// mismatches. <c>File</c> is the path, <c>Offset</c> the byte offset where the problem was found
/// (in the decompressed stream for <c>.gz</c> files), and the message ends with how to fix it.
type DataFormatException(file: string, offset: int64, problem: string, fix: string) =
    inherit SnnSpecException(sprintf "%s: at byte offset %d: %s. Fix: %s" file offset problem fix)

    member _.File = file
    member _.Offset = offset
    member _.Problem = problem
    member _.Fix = fix

/// Bounded reading of whole files into memory; every read checks the bytes are there first.
module internal Bytes =
    /// Raises a DataFormatException.
    let fail (file: string) (offset: int64) (problem: string) (fix: string) : 'a =
        raise (DataFormatException(file, offset, problem, fix))

    let redownload =
        "the file is damaged or incomplete; fetch it again (Fetch.fetch verifies SHA-256) or copy an intact copy"

    /// Deflate expands by at most ~1032:1, so a gzip stream of n bytes cannot justify more than this.
    let maxGzipExpansion (compressed: int64) = compressed * 1032L + 1024L

    let isGzip (path: string) =
        path.EndsWith(".gz", StringComparison.OrdinalIgnoreCase)

    /// Reads exactly count bytes from s into buf[off..], returning how many arrived before the end.
    let readFully (s: Stream) (buf: byte[]) (off: int) (count: int) =
        let mutable got = 0
        let mutable fin = false

        while not fin && got < count do
            let n = s.Read(buf, off + got, count - got)

            if n <= 0 then fin <- true else got <- got + n

        got

    /// The whole content of a raw or gzip file. For gzip, the first (up to) <c>headerLen</c>
    /// decompressed bytes go to <c>declared</c>, which returns the total length the header declares;
    /// that length is checked against what the compressed size can hold before anything is allocated.
    let readAll (path: string) (headerLen: int) (declared: byte[] -> int -> int64) : byte[] =
        if not (File.Exists path) then
            fail path 0L "the file does not exist" "check the path, or run Fetch.fetch to place the dataset"

        if isGzip path then
            use fs = File.OpenRead path
            use gz = new GZipStream(fs, CompressionMode.Decompress)
            let header = Array.zeroCreate<byte> headerLen

            let got =
                try
                    readFully gz header 0 headerLen
                with :? InvalidDataException as e ->
                    fail path 0L ("not a valid gzip stream (" + e.Message + ")") redownload

            let total = max 0L (declared header got)

            if total > maxGzipExpansion fs.Length || total > int64 Array.MaxLength then
                fail
                    path
                    0L
                    (sprintf "the header declares %d bytes, more than a %d-byte gzip file can hold" total fs.Length)
                    redownload

            let all =
                if total <= int64 got then
                    Array.sub header 0 (int total)
                else
                    let all = Array.zeroCreate<byte>(int total)
                    Array.Copy(header, all, got)

                    let rest =
                        try
                            readFully gz all got (int total - got)
                        with :? InvalidDataException as e ->
                            fail path (int64 got) ("corrupted gzip data (" + e.Message + ")") redownload

                    if rest < int total - got then
                        fail
                            path
                            (int64 (got + rest))
                            (sprintf "the data ends after %d bytes but the header declares %d" (got + rest) total)
                            redownload

                    all

            let extra = Array.zeroCreate<byte> 1

            let more =
                try
                    readFully gz extra 0 1
                with :? InvalidDataException ->
                    1

            if more > 0 || int64 got > total then
                fail path total (sprintf "the data continues past the %d bytes the header declares" total) redownload

            all
        else
            let len = FileInfo(path).Length

            if len > int64 Array.MaxLength then
                fail path 0L (sprintf "the file is %d bytes, larger than one array can hold" len) "split the file"

            File.ReadAllBytes path

    let inline u32be (b: byte[]) (o: int) =
        (uint32 b[o] <<< 24)
        ||| (uint32 b[o + 1] <<< 16)
        ||| (uint32 b[o + 2] <<< 8)
        ||| uint32 b[o + 3]

    let inline u32le (b: byte[]) (o: int) =
        (uint32 b[o + 3] <<< 24)
        ||| (uint32 b[o + 2] <<< 16)
        ||| (uint32 b[o + 1] <<< 8)
        ||| uint32 b[o]

    let inline u16le (b: byte[]) (o: int) = (uint16 b[o + 1] <<< 8) ||| uint16 b[o]

    /// The offset just past the ASCII header lines that start with '#' (AEDAT 2 and 3 files).
    /// With <c>endMarker</c>, stops after the line that starts with it.
    let skipHashHeader (b: byte[]) (endMarker: string) =
        let mutable p = 0
        let mutable fin = false

        while not fin && p < b.Length && b[p] = byte '#' do
            let nl = Array.IndexOf(b, byte '\n', p)
            let lineEnd = if nl < 0 then b.Length else nl + 1

            let isEnd =
                not (String.IsNullOrEmpty endMarker)
                && lineEnd - p >= endMarker.Length
                && Text.Encoding.ASCII.GetString(b, p, endMarker.Length) = endMarker

            p <- lineEnd

            if isEnd then
                fin <- true

        p
