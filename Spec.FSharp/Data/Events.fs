namespace SnnSpec.Data

open System
open System.IO
open System.Text

/// One address event of a dynamic vision sensor: pixel (X, Y) with (0, 0) the top-left, timestamp
/// T in microseconds, polarity P = 1 for an ON event (brightness rose), 0 for OFF.
[<Struct>]
type Event =
    {
        X: uint16
        Y: uint16
        T: int64
        P: byte
    }

/// A labelled set of event recordings on a Width × Height sensor; Samples[i] is ordered by time.
type EventSet =
    {
        Name: string
        Samples: Event[][]
        Labels: int[]
        Width: int
        Height: int
        Classes: int
    }

    member s.Count = s.Labels.Length

/// How an AEDAT 2 address word encodes (x, y, polarity).
type AedatAddress =
    /// DVS128 (jAER): x = (a >> 1) & 0x7F, y = (a >> 8) & 0x7F, p = a & 1.
    | Dvs128
    /// DAVIS (jAER default): x = (a & 0x003FF000) >> 12, y = (a & 0x7FC00000) >> 22, p = (a & 0x800) >> 11.
    | Davis

/// Readers of the neuromorphic datasets' file formats. Every reader checks sizes against the file
/// length before allocating and raises DataFormatException (file, byte offset, fix) on bad input.
module Events =
    let private sensorFix =
        "check the sensor size passed matches the dataset (N-MNIST 34×34, N-Caltech101 240×180, DVS128 128×128)"

    let private readRaw (path: string) = Bytes.readAll path 0 (fun _ _ -> 0L)

    /// ATIS <c>.bin</c> (N-MNIST, N-Caltech101): 5 bytes per event, x = b0, y = b1, p = b2 >> 7,
    /// t = ((b2 &amp; 127) &lt;&lt; 16) | (b3 &lt;&lt; 8) | b4 (23-bit µs). As in the datasets' own reader, an
    /// event with y = 240 marks a timestamp overflow: it adds 2^13 µs to all later timestamps and is
    /// not itself an event.
    let readAtis (width: int) (height: int) (path: string) : Event[] =
        let b = readRaw path

        if b.Length % 5 <> 0 then
            Bytes.fail
                path
                (int64 (b.Length / 5 * 5))
                (sprintf "%d bytes is not a whole number of 5-byte events (%d left over)" b.Length (b.Length % 5))
                ("the file is truncated or not an ATIS .bin recording; " + Bytes.redownload)

        let n = b.Length / 5
        let mutable overflows = 0

        for i in 0 .. n - 1 do
            if b[i * 5 + 1] = 240uy then
                overflows <- overflows + 1

        let out = Array.zeroCreate<Event>(n - overflows)
        let mutable k = 0
        let mutable extra = 0L

        for i in 0 .. n - 1 do
            let o = i * 5
            let x = int b[o]
            let y = int b[o + 1]

            if y = 240 then
                extra <- extra + 8192L
            else
                if x >= width || y >= height then
                    Bytes.fail
                        path
                        (int64 o)
                        (sprintf "event %d at (%d, %d) lies outside the %d×%d sensor" i x y width height)
                        sensorFix

                let b2 = int b[o + 2]

                out[k] <-
                    {
                        X = uint16 x
                        Y = uint16 y
                        P = byte (b2 >>> 7)
                        T = int64 (((b2 &&& 127) <<< 16) ||| (int b[o + 3] <<< 8) ||| int b[o + 4]) + extra
                    }

                k <- k + 1

        out

    /// Writes events in the ATIS .bin layout (timestamps must be below 2^23 µs; no overflow markers).
    let writeAtis (path: string) (events: Event[]) =
        let b = Array.zeroCreate<byte>(events.Length * 5)

        events
        |> Array.iteri (fun i e ->
            if e.T < 0L || e.T >= (1L <<< 23) || e.X > 255us || e.Y > 239us then
                SnnSpec.Errors.invalidArg
                    "Events.writeAtis"
                    (sprintf "events[%d]" i)
                    e
                    "x < 256, y < 240, 0 ≤ t < 2^23 µs"

            let o = i * 5
            b[o] <- byte e.X
            b[o + 1] <- byte e.Y
            b[o + 2] <- byte ((int e.P <<< 7) ||| (int (e.T >>> 16) &&& 127))
            b[o + 3] <- byte (e.T >>> 8)
            b[o + 4] <- byte e.T)

        File.WriteAllBytes(path, b)

    /// An N-MNIST recording (34×34).
    let readNMnist path = readAtis 34 34 path

    /// An N-Caltech101 recording (240×180).
    let readNCaltech101 path = readAtis 240 180 path

    /// AEDAT 2 (jAER): ASCII header lines starting with '#', then 8-byte records of a big-endian
    /// uint32 address and a big-endian uint32 timestamp (µs). Coordinates outside width × height are
    /// rejected.
    let readAedat2 (address: AedatAddress) (width: int) (height: int) (path: string) : Event[] =
        let b = readRaw path
        let start = Bytes.skipHashHeader b ""
        let len = b.Length - start

        if len % 8 <> 0 then
            Bytes.fail
                path
                (int64 (start + len / 8 * 8))
                (sprintf "%d data bytes after the header is not a whole number of 8-byte events" len)
                ("the file is truncated or not an AEDAT 2 file; " + Bytes.redownload)

        Array.init (len / 8) (fun i ->
            let o = start + i * 8
            let a = Bytes.u32be b o

            let x, y, p =
                match address with
                | Dvs128 -> int ((a >>> 1) &&& 0x7Fu), int ((a >>> 8) &&& 0x7Fu), byte (a &&& 1u)
                | Davis ->
                    int ((a &&& 0x003FF000u) >>> 12), int ((a &&& 0x7FC00000u) >>> 22), byte ((a &&& 0x800u) >>> 11)

            if x >= width || y >= height then
                Bytes.fail
                    path
                    (int64 o)
                    (sprintf "event %d at (%d, %d) lies outside the %d×%d sensor" i x y width height)
                    "check the address layout (Dvs128 or Davis) and the sensor size"

            {
                X = uint16 x
                Y = uint16 y
                P = p
                T = int64 (Bytes.u32be b (o + 4))
            })

    /// A CIFAR10-DVS recording (128×128): AEDAT 2 with DVS128 addresses, re-oriented as SpikingJelly
    /// does (x ← 127 − y, y ← 127 − x, p ← 1 − p) so images appear upright.
    let readCifar10Dvs (path: string) =
        readAedat2 Dvs128 128 128 path
        |> Array.map (fun e ->
            { e with
                X = 127us - e.Y
                Y = 127us - e.X
                P = 1uy - e.P
            })

    let private knownPacketTypes = 12us

    /// AEDAT 3.1 (DVS128 Gesture): a header of '#' lines from "#!AER-DAT3.1" to "#!END-HEADER", then
    /// packets, each a 28-byte little-endian header (uint16 type, uint16 source, uint32 eventSize,
    /// tsOffset, tsOverflow, eventCapacity, eventNumber, eventValid) followed by eventCapacity ×
    /// eventSize bytes. Polarity events (type 1, 8 bytes: uint32 data, int32 timestamp) give
    /// x = (d >> 17) &amp; 0x7FFF, y = (d >> 2) &amp; 0x7FFF, p = (d >> 1) &amp; 1, t = ts | tsOverflow &lt;&lt; 31;
    /// events whose validity bit (d &amp; 1) is clear are skipped. Other known packet types (0–12) are
    /// skipped; unknown types are an error.
    let readAedat31 (width: int) (height: int) (path: string) : Event[] =
        let b = readRaw path
        let magic = "#!AER-DAT3"

        if b.Length < magic.Length || Encoding.ASCII.GetString(b, 0, magic.Length) <> magic then
            Bytes.fail
                path
                0L
                "wrong magic number: an AEDAT 3 file starts with \"#!AER-DAT3.1\""
                "pass an AEDAT 3.1 recording (DVS128 Gesture user*.aedat); AEDAT 2 files need readAedat2"

        let start = Bytes.skipHashHeader b "#!END-HEADER"
        // Pass 1: validate packet headers and count polarity events.
        let mutable p = start
        let mutable count = 0L

        let packet (p: int) =
            if b.Length - p < 28 then
                Bytes.fail
                    path
                    (int64 p)
                    (sprintf "the file ends %d bytes into a 28-byte packet header" (b.Length - p))
                    ("the file is truncated; " + Bytes.redownload)

            let typ = Bytes.u16le b p
            let size = Bytes.u32le b (p + 4)
            let capacity = Bytes.u32le b (p + 16)
            let number = Bytes.u32le b (p + 20)

            if typ > knownPacketTypes then
                Bytes.fail
                    path
                    (int64 p)
                    (sprintf "unknown event packet type %d (AEDAT 3.1 defines 0–12)" typ)
                    ("the file is damaged or not AEDAT 3.1; " + Bytes.redownload)

            let bytes = int64 size * int64 capacity

            if bytes > int64 (b.Length - p - 28) then
                Bytes.fail
                    path
                    (int64 p)
                    (sprintf
                        "the packet declares %d events of %d bytes but only %d bytes follow"
                        capacity
                        size
                        (b.Length - p - 28))
                    ("the file is truncated; " + Bytes.redownload)

            if typ = 1us && (size < 8u || number > capacity) then
                Bytes.fail
                    path
                    (int64 p)
                    (sprintf "a polarity packet with event size %d and %d of %d events used" size number capacity)
                    ("the file is damaged; " + Bytes.redownload)

            typ, int size, int number, Bytes.u32le b (p + 12), p + 28 + int bytes

        while p < b.Length do
            let typ, _, number, _, next = packet p

            if typ = 1us then
                count <- count + int64 number

            p <- next

        let out = ResizeArray<Event>(int count)
        p <- start

        while p < b.Length do
            let typ, size, number, overflow, next = packet p

            if typ = 1us then
                for i in 0 .. number - 1 do
                    let o = p + 28 + i * size
                    let d = Bytes.u32le b o

                    if d &&& 1u = 1u then
                        let x = int ((d >>> 17) &&& 0x7FFFu)
                        let y = int ((d >>> 2) &&& 0x7FFFu)

                        if x >= width || y >= height then
                            Bytes.fail
                                path
                                (int64 o)
                                (sprintf "event at (%d, %d) lies outside the %d×%d sensor" x y width height)
                                sensorFix

                        out.Add
                            {
                                X = uint16 x
                                Y = uint16 y
                                P = byte ((d >>> 1) &&& 1u)
                                T = int64 (Bytes.u32le b (o + 4)) ||| (int64 overflow <<< 31)
                            }

            p <- next

        out.ToArray()

    /// A DVS128 Gesture label file: a header line then rows "class,startTime_usec,endTime_usec" with
    /// class 1–11. Returns (class − 1, start, end) per row.
    let readGestureLabels (path: string) =
        let b = readRaw path
        let text = Encoding.ASCII.GetString b
        let rows = ResizeArray<int * int64 * int64>()
        let mutable offset = 0

        for line in text.Split('\n') do
            let l = line.Trim()

            if l.Length > 0 && Char.IsDigit l[0] then
                let parts = l.Split(',')

                let ok, c, s, e =
                    if parts.Length = 3 then
                        let okC, c = Int32.TryParse parts[0]
                        let okS, s = Int64.TryParse parts[1]
                        let okE, e = Int64.TryParse parts[2]
                        okC && okS && okE, c, s, e
                    else
                        false, 0, 0L, 0L

                if not ok || c < 1 || c > 11 || e < s then
                    Bytes.fail
                        path
                        (int64 offset)
                        (sprintf "row %A is not \"class,start_us,end_us\" with class 1–11 and end ≥ start" l)
                        "use the dataset's user*_labels.csv file unchanged"

                rows.Add(c - 1, s, e)
            elif l.Length > 0 && not (l.StartsWith "class") then
                Bytes.fail
                    path
                    (int64 offset)
                    (sprintf "unexpected line %A" l)
                    "use the dataset's user*_labels.csv file unchanged"

            offset <- offset + line.Length + 1

        rows.ToArray()

    /// Cuts a DVS128 Gesture recording into labelled samples: events with start ≤ t &lt; end per label row.
    let sliceByLabels (events: Event[]) (labels: (int * int64 * int64)[]) =
        labels
        |> Array.map (fun (c, s, e) -> c, events |> Array.filter (fun ev -> ev.T >= s && ev.T < e))

    /// A recording of DVS128 Gesture (AEDAT 3.1 plus its <c>_labels.csv</c>) as (class 0–10, events) samples.
    let readGesture (aedatPath: string) (labelsPath: string) =
        sliceByLabels (readAedat31 128 128 aedatPath) (readGestureLabels labelsPath)
