module SnnSpec.Tests.DataEventTests

open System
open System.IO
open System.Text
open NUnit.Framework
open FsCheck.NUnit
open SnnSpec
open SnnSpec.Data
open SnnSpec.Tests.TestUtil
open SnnSpec.Tests.DataStaticTests

let inline ev x y t p : Event =
    {
        X = uint16 x
        Y = uint16 y
        T = int64 t
        P = byte p
    }

let u32be (v: uint32) =
    [| byte (v >>> 24); byte (v >>> 16); byte (v >>> 8); byte v |]

let u32le (v: uint32) = BitConverter.GetBytes v
let u16le (v: uint16) = BitConverter.GetBytes v

/// An AEDAT 3.1 packet header.
let packetHeader (typ: int) (size: int) (overflow: int) (capacity: int) (number: int) =
    Array.concat
        [
            u16le (uint16 typ)
            u16le 1us
            u32le (uint32 size)
            u32le 4u
            u32le (uint32 overflow)
            u32le (uint32 capacity)
            u32le (uint32 number)
            u32le (uint32 number)
        ]

/// A DVS polarity event of AEDAT 3.1.
let polarity x y p valid (ts: int) =
    Array.append
        (u32le (
            (uint32 x <<< 17)
            ||| (uint32 y <<< 2)
            ||| (uint32 p <<< 1)
            ||| (if valid then 1u else 0u)
        ))
        (u32le (uint32 ts))

let aedat3Header =
    Encoding.ASCII.GetBytes "#!AER-DAT3.1\r\n#Format: RAW\r\n#!END-HEADER\r\n"

let validAedat3 =
    Array.concat
        [
            aedat3Header
            packetHeader 0 8 0 1 1
            Array.zeroCreate 8
            packetHeader 1 8 1 3 3
            polarity 5 6 1 true 100
            polarity 7 8 0 false 150
            polarity 127 0 0 true 200
        ]

let aedat2Header =
    Encoding.ASCII.GetBytes "#!AER-DAT2.0\r\n# This is a raw AE data file\r\n"

let dvs128Address x y p =
    (uint32 y <<< 8) ||| (uint32 x <<< 1) ||| uint32 p

let validAedat2 =
    Array.concat
        [
            aedat2Header
            u32be (dvs128Address 5 10 1)
            u32be 1000u
            u32be (dvs128Address 0 127 0)
            u32be 2000u
        ]

let write (name: string) (b: byte[]) =
    let p = Path.Combine(tempDir (), name)
    File.WriteAllBytes(p, b)
    p

// ---------------------------------------------------------------- ATIS

[<Test>]
let ``ATIS bytes decode to x, y, polarity and 23-bit timestamps, with overflow markers`` () =
    let p =
        write
            "a.bin"
            [|
                3uy
                4uy
                0x81uy
                0x23uy
                0x45uy // x 3, y 4, ON, t 0x012345
                33uy
                33uy
                0x00uy
                0x00uy
                0x07uy // x 33, y 33, OFF, t 7
                0uy
                240uy
                0uy
                0uy
                0uy // overflow marker: later events + 8192 µs
                1uy
                2uy
                0x00uy
                0x00uy
                0x01uy
            |]

    Assert.That(Events.readNMnist p, Eq.To [| ev 3 4 0x012345 1; ev 33 33 7 0; ev 1 2 8193 0 |])

[<Test>]
let ``ATIS round-trips through writeAtis`` () =
    let es = [| ev 0 0 0 1; ev 239 179 8388607 0; ev 17 3 55 1 |]
    let p = Path.Combine(tempDir (), "x.bin")
    Events.writeAtis p es
    Assert.That(Events.readNCaltech101 p, Eq.To es)

[<Test>]
let ``ATIS truncated events and out-of-sensor coordinates`` () =
    let p = write "t.bin" [| 3uy; 4uy; 0uy; 0uy; 1uy; 5uy; 6uy |]
    assertBadFile p (Some 5L) [ "5-byte events" ] (fun () -> box (Events.readNMnist p))
    let q = write "o.bin" [| 3uy; 4uy; 0uy; 0uy; 1uy; 40uy; 6uy; 0uy; 0uy; 2uy |]
    assertBadFile q (Some 5L) [ "(40, 6)"; "34×34" ] (fun () -> box (Events.readNMnist q))

// ---------------------------------------------------------------- AEDAT 2 / CIFAR10-DVS

[<Test>]
let ``AEDAT 2 skips the header and decodes big-endian DVS128 words; CIFAR10-DVS is re-oriented`` () =
    let p = write "c.aedat" validAedat2
    Assert.That(Events.readAedat2 Dvs128 128 128 p, Eq.To [| ev 5 10 1000 1; ev 0 127 2000 0 |])
    Assert.That(Events.readCifar10Dvs p, Eq.To [| ev 117 122 1000 0; ev 0 127 2000 1 |])
    // DAVIS layout: x in bits 12–21, y in bits 22–30, polarity bit 11.
    let d =
        write "d.aedat" (Array.concat [ aedat2Header; u32be ((100u <<< 22) ||| (200u <<< 12) ||| 0x800u); u32be 9u ])

    Assert.That(Events.readAedat2 Davis 240 180 d, Eq.To [| ev 200 100 9 1 |])

    assertBadFile d (Some(int64 aedat2Header.Length)) [ "(200, 100)" ] (fun () ->
        box (Events.readAedat2 Davis 128 128 d))

[<Test>]
let ``AEDAT 2 truncated record`` () =
    let p = write "t.aedat" validAedat2[.. validAedat2.Length - 3]

    assertBadFile p (Some(int64 (aedat2Header.Length + 8))) [ "8-byte events" ] (fun () ->
        box (Events.readCifar10Dvs p))

// ---------------------------------------------------------------- AEDAT 3.1 / DVS128 Gesture

[<Test>]
let ``AEDAT 3.1 reads polarity packets, skips other packets and invalid events, applies the overflow`` () =
    let p = write "g.aedat" validAedat3
    let o = 1L <<< 31
    Assert.That(Events.readAedat31 128 128 p, Eq.To [| ev 5 6 (o + 100L) 1; ev 127 0 (o + 200L) 0 |])

[<Test>]
let ``AEDAT 3.1 unknown packet types, truncated packets and wrong magic`` () =
    let start = aedat3Header.Length
    let bad = Array.copy validAedat3
    bad[start + 36] <- 42uy // the second packet's type
    let p = write "u.aedat" bad

    assertBadFile p (Some(int64 (start + 36))) [ "unknown event packet type 42" ] (fun () ->
        box (Events.readAedat31 128 128 p))

    let q = write "t.aedat" validAedat3[.. validAedat3.Length - 5]
    assertBadFile q (Some(int64 (start + 36))) [ "only 20 bytes follow" ] (fun () -> box (Events.readAedat31 128 128 q))
    let r = write "h.aedat" (Array.append validAedat3 [| 1uy; 0uy |])

    assertBadFile r (Some(int64 validAedat3.Length)) [ "28-byte packet header" ] (fun () ->
        box (Events.readAedat31 128 128 r))

    let m = write "m.aedat" validAedat2
    assertBadFile m (Some 0L) [ "magic number" ] (fun () -> box (Events.readAedat31 128 128 m))

[<Test>]
let ``gesture label CSV rows cut a recording into 0-based classes`` () =
    let es = [| for t in 0..9 -> ev 1 1 (t * 100) 1 |]

    let csv =
        write
            "user01_fluorescent_labels.csv"
            (Encoding.ASCII.GetBytes "class,startTime_usec,endTime_usec\r\n1,0,300\r\n11,500,1000\r\n")

    let labels = Events.readGestureLabels csv
    Assert.That(labels, Eq.To [| 0, 0L, 300L; 10, 500L, 1000L |])
    let samples = Events.sliceByLabels es labels
    Assert.That(samples |> Array.map (fun (c, s) -> c, s.Length), Eq.To [| 0, 3; 10, 5 |])

    let bad =
        write "bad_labels.csv" (Encoding.ASCII.GetBytes "class,startTime_usec,endTime_usec\n12,0,300\n")

    assertBadFile bad (Some 34L) [ "class 1–11" ] (fun () -> box (Events.readGestureLabels bad))

// ---------------------------------------------------------------- Frames

let opts t by =
    {
        Frames = t
        SplitBy = by
        Downsample = 1
        MergePolarity = false
    }

[<Test>]
let ``frames by count and by time: equal shares, the last frame takes the remainder`` () =
    let es = [| for i in 0..9 -> ev (i % 2) 0 (if i < 8 then i else 100) (i % 2) |]

    let perFrame (f: float32[]) =
        Array.init 3 (fun k -> Array.sum f[k * 4 .. k * 4 + 3])
    // Shape [3, 2, 1, 2].
    let byCount = Frames.integrate (opts 3 ByCount) 2 1 es
    Assert.That(perFrame byCount, Eq.To [| 3.0f; 3.0f; 4.0f |])
    // dt = 100 / 3 = 33: events t = 0..7 fall in frame 0; t = 100 is the last frame.
    let byTime = Frames.integrate (opts 3 ByTime) 2 1 es
    Assert.That(perFrame byTime, Eq.To [| 8.0f; 0.0f; 2.0f |])
    // Frame 0: OFF events at x 0 (t 0, 2, 4, 6), ON at x 1 (t 1, 3, 5, 7).
    Assert.That(byTime[0..3], Eq.To [| 4.0f; 0.0f; 0.0f; 4.0f |])
    // Fewer events than frames: all go to the last frame (as the remainder).
    Assert.That(perFrame (Frames.integrate (opts 3 ByCount) 2 1 es[..1]), Eq.To [| 0.0f; 0.0f; 2.0f |])

[<Test>]
let ``downsampling sums blocks and merged polarity has one channel`` () =
    let es = [| ev 0 0 0 1; ev 1 1 1 0; ev 2 2 2 1; ev 4 0 3 1 |]

    let o =
        { opts 1 ByCount with
            Downsample = 2
            MergePolarity = true
        }

    Assert.That(Frames.shape o 5 3, Eq.To [| 1; 1; 2; 3 |])
    Assert.That(Frames.integrate o 5 3 es, Eq.To [| 2.0f; 0.0f; 1.0f; 0.0f; 1.0f; 0.0f |])

[<Property(MaxTest = 50)>]
let ``integration keeps every event`` (raw: (byte * byte * uint16 * bool)[]) (t: byte) (byTime: bool) =
    let es =
        raw
        |> Array.map (fun (x, y, dt, p) -> ev (int x % 7) (int y % 5) (int dt) (if p then 1 else 0))
        |> Array.sortBy (fun e -> e.T)

    let o =
        { opts (1 + int t % 6) (if byTime then ByTime else ByCount) with
            Downsample = 2
        }

    Array.sum (Frames.integrate o 7 5 es) = float32 es.Length

[<Test>]
let ``cached integration saves once and reloads the same frames; a damaged cache is reported`` () =
    let set =
        {
            Name = "toy"
            Samples = [| [| ev 0 0 0 1; ev 1 1 5 0 |]; [| ev 2 2 1 1 |] |]
            Labels = [| 1; 0 |]
            Width = 3
            Height = 3
            Classes = 2
        }

    let dir = tempDir ()
    let o = opts 2 ByTime
    let a = Frames.cached dir o set
    let files = Directory.GetFiles dir
    Assert.That(files.Length, Eq.To 1)
    let b = Frames.cached dir o set
    Assert.That(b.Counts.ToArray(), Eq.To(a.Counts.ToArray()))
    Assert.That(b.Labels, Eq.To [| 1; 0 |])
    Assert.That(a.Counts.ToArray() |> Array.sum, Eq.To 3)
    Frames.cached dir { o with Frames = 3 } set |> ignore
    Assert.That(Directory.GetFiles(dir).Length, Eq.To 2)
    let bytes = File.ReadAllBytes files[0]
    File.WriteAllBytes(files[0], bytes[.. bytes.Length - 2])
    assertBadFile files[0] (Some(int64 bytes.Length - 1L)) [ "declares" ] (fun () -> box (Frames.load files[0]))
    bytes[0] <- 0uy
    File.WriteAllBytes(files[0], bytes)
    assertBadFile files[0] (Some 0L) [ "magic" ] (fun () -> box (Frames.load files[0]))

[<Test>]
let ``frame sources batch as [B, T, C, H, W]`` () =
    let set =
        {
            Name = "toy"
            Samples = Array.init 5 (fun i -> [| ev i 0 0 1; ev 0 i 1 0 |])
            Labels = Array.init 5 id
            Width = 5
            Height = 5
            Classes = 5
        }

    let o = opts 2 ByCount

    let b =
        Batching.create
            { Batching.options 2 0 with
                Shuffle = false
            }
            (Frames.source o set)

    let first = b.Epoch 0 |> Seq.head
    Assert.That(first.Inputs.Shape, Eq.To [| 2; 2; 2; 5; 5 |])
    Assert.That(first.Inputs.ToArray() |> Array.sum, Eq.To 4.0f)

    let compact =
        Batching.create
            { Batching.options 2 0 with
                Shuffle = false
            }
            (Frames.integrateSet o set)

    Assert.That((compact.Epoch 0 |> Seq.head).Inputs.ToArray(), Eq.To(first.Inputs.ToArray()))

[<Test>]
let ``per-class split is seeded, disjoint, complete and takes ceil(ratio * count) per class`` () =
    let labels = Array.init 103 (fun i -> i % 10)
    let tr, te = Frames.splitPerClass labels 0.9 (Rng.create 4)
    Assert.That(Array.append tr te |> Array.sort, Eq.To [| 0..102 |])

    for c in 0..9 do
        let n = labels |> Array.filter ((=) c) |> Array.length
        Assert.That(tr |> Array.filter (fun i -> labels[i] = c) |> Array.length, Eq.To(int (ceil (0.9 * float n))))

    Assert.That(Frames.splitPerClass labels 0.9 (Rng.create 4), Eq.To((tr, te)))
    Assert.That(fst (Frames.splitPerClass labels 0.9 (Rng.create 5)), Is.Not.EqualTo tr)

// ---------------------------------------------------------------- Emulation

let squareImage () =
    Array.init (28 * 28) (fun k ->
        let y, x = k / 28, k % 28
        if y >= 8 && y < 20 && x >= 10 && x < 18 then 255uy else 0uy)

[<Test>]
let ``emulated saccades give ON and OFF events on the 34x34 sensor within 300 ms, reproducibly`` () =
    let o = Emulation.defaults
    let es = Emulation.emulateImage o (Rng.create 1) (squareImage ()) 0 28 28
    Assert.That(es.Length, Is.GreaterThan 100)

    Assert.That(
        es
        |> Array.forall (fun e -> e.X < 34us && e.Y < 34us && e.T > 0L && e.T <= 300000L),
        Is.True
    )

    Assert.That(es |> Array.pairwise |> Array.forall (fun (a, b) -> a.T <= b.T), Is.True)

    Assert.That(
        es |> Array.exists (fun e -> e.P = 1uy)
        && es |> Array.exists (fun e -> e.P = 0uy),
        Is.True
    )
    // Events happen in all three saccades.
    for s in 0..2 do
        Assert.That(
            es
            |> Array.exists (fun e -> e.T > int64 s * 100000L && e.T <= int64 (s + 1) * 100000L),
            Is.True
        )

    Assert.That(Emulation.emulateImage o (Rng.create 1) (squareImage ()) 0 28 28, Eq.To es)
    // A blank image produces nothing.
    Assert.That(Emulation.emulateImage o (Rng.create 1) (Array.zeroCreate 784) 0 28 28, Is.Empty)
    // Threshold mismatch makes keys matter.
    let m = { o with ThresholdMismatch = 0.1f }

    Assert.That(
        Emulation.emulateImage m (Rng.create 1) (squareImage ()) 0 28 28,
        Is.Not.EqualTo(Emulation.emulateImage m (Rng.create 2) (squareImage ()) 0 28 28)
    )

[<Test>]
let ``emulated streams round-trip through the N-MNIST file format and run through frames and batches`` () =
    let images =
        ImageSet.create
            "squares"
            (Array.concat [ squareImage (); Array.rev (squareImage ()); squareImage () ])
            [| 0; 1; 0 |]
            1
            28
            28
            2

    let set = Emulation.emulateSet Emulation.defaults images
    Assert.That((set.Width, set.Height, set.Count), Eq.To((34, 34, 3)))
    let p = Path.Combine(tempDir (), "00001.bin")
    Events.writeAtis p set.Samples[0]
    Assert.That(Events.readNMnist p, Eq.To set.Samples[0])
    let b = Batching.create (Batching.options 3 0) (Frames.source (opts 10 ByTime) set)
    let batch = b.Epoch 0 |> Seq.exactlyOne
    Assert.That(batch.Inputs.Shape, Eq.To [| 3; 10; 2; 34; 34 |])
    Assert.That(batch.Inputs.ToArray() |> Array.sum, Eq.To(float32 (set.Samples |> Array.sumBy Array.length)))

[<Property(MaxTest = 25)>]
let ``time-major batches are the transposes of sample-major ones, short last batch included``
    (seed: int)
    (size: FsCheck.PositiveInt)
    =
    let set =
        {
            Name = "toy"
            Samples =
                Array.init 7 (fun i ->
                    Array.init (1 + (i * 3 + abs seed) % 9) (fun k -> ev ((i + k) % 5) (k % 5) (int64 k) (k % 2)))
            Labels = Array.init 7 (fun i -> i % 3)
            Width = 5
            Height = 5
            Classes = 3
        }

    let frames = Frames.integrateSet (opts 3 ByCount) set
    let bs = 1 + size.Get % 4

    let options =
        { Batching.options bs seed with
            Prefetch = abs (seed % 2)
        }

    let sampleMajor = Batching.create options frames
    let timeMajor = Batching.create { options with TimeMajor = true } frames

    for a, b in Seq.zip (sampleMajor.Epoch 1) (timeMajor.Epoch 1) do
        let n = a.Labels.Length
        Assert.That(b.Labels, Eq.To a.Labels)
        Assert.That(b.Inputs.Shape, Eq.To [| 3; n; 2; 5; 5 |])
        Assert.That(b.Inputs.ToArray(), Eq.To((Tensor.transpose 0 1 a.Inputs).ToArray()))

    Assert.That(timeMajor.BatchShape, Eq.To [| 3; bs; 2; 5; 5 |])
    // The one-tensor form agrees with the batches.
    let all = SampleSource.toTensor true frames [| 0..6 |]
    let byBatch = SampleSource.toTensor false frames [| 0..6 |]
    Assert.That(all.ToArray(), Eq.To((Tensor.transpose 0 1 byBatch).ToArray()))

[<Test>]
let ``time-major batching needs sequence samples`` () =
    assertRaises<SnnSpecException> [ "TimeMajor"; "sequence" ] (fun () ->
        box (
            Batching.create
                { Batching.options 2 0 with
                    TimeMajor = true
                }
                (SampleSource.subset (ImageSet.create "flat" [| 1uy; 2uy |] [| 0; 1 |] 1 1 1 2) [| 0; 1 |]
                 |> fun s ->
                     { new ISampleSource with
                         member _.Count = s.Count
                         member _.SampleShape = [| 1 |]
                         member _.Label i = s.Label i
                         member _.CopySample(i, d, o) = s.CopySample(i, d, o)
                     })
        ))

[<Test>]
let ``sample subsets are views in the given order and check their indices`` () =
    let images =
        ImageSet.create "four" [| 0uy; 85uy; 170uy; 255uy |] [| 0; 1; 2; 3 |] 1 1 1 4

    let sub = SampleSource.subset images [| 3; 1 |]
    Assert.That((sub.Count, sub.Label 0, sub.Label 1), Eq.To((2, 3, 1)))
    Assert.That((SampleSource.toTensor false sub [| 0; 1 |]).ToArray(), Eq.To [| 1.0f; 85.0f / 255.0f |])
    Assert.That(SampleSource.take 10 images, Is.SameAs images)
    Assert.That((SampleSource.take 2 images).Count, Eq.To 2)
    assertRaises<SnnSpecException> [ "indices"; "4" ] (fun () -> box (SampleSource.subset images [| 4 |]))

[<Test>]
let ``emulated frames built image by image equal emulating the set and integrating it; the cache reloads them`` () =
    let images =
        ImageSet.create
            "squares"
            (Array.concat [ squareImage (); Array.rev (squareImage ()); squareImage () ])
            [| 0; 1; 0 |]
            1
            28
            28
            2

    let o = opts 4 ByTime
    let direct = EmulatedFrames.ofImages Emulation.defaults o images

    let viaEvents =
        Frames.integrateSet o (Emulation.emulateSet Emulation.defaults images)

    Assert.That(direct.Shape, Eq.To [| 4; 2; 34; 34 |])
    Assert.That(direct.Counts.ToArray(), Eq.To(viaEvents.Counts.ToArray()))
    Assert.That(direct.Counts.ElementSize, Eq.To 1, "short frames hold one byte per count")
    Assert.That(direct.Labels, Eq.To [| 0; 1; 0 |])
    Assert.That(direct.Counts.ToArray() |> Array.exists (fun c -> c > 0))

    let dir = tempDir ()
    let first = EmulatedFrames.cached dir Emulation.defaults o images
    let path = EmulatedFrames.cachePath dir Emulation.defaults o images
    Assert.That(File.Exists path)
    let stamp = File.GetLastWriteTimeUtc path
    let again = EmulatedFrames.cached dir Emulation.defaults o images
    Assert.That(again.Counts.ToArray(), Eq.To(first.Counts.ToArray()))
    Assert.That(File.GetLastWriteTimeUtc path, Eq.To stamp)
    // Other options or other images are other files.
    Assert.That(EmulatedFrames.cachePath dir Emulation.defaults (opts 2 ByTime) images, Is.Not.EqualTo path)

    Assert.That(
        EmulatedFrames.cachePath dir Emulation.defaults o (ImageSet.subset images [| 0; 1 |]),
        Is.Not.EqualTo path
    )
    // A damaged cache file is rebuilt.
    File.WriteAllBytes(path, Array.create 40 7uy)
    let rebuilt = EmulatedFrames.cached dir Emulation.defaults o images
    Assert.That(rebuilt.Counts.ToArray(), Eq.To(first.Counts.ToArray()))
    Assert.That((Frames.load path).Counts.ToArray(), Eq.To(first.Counts.ToArray()))

[<Test>]
let ``frames take one byte per count unless a count exceeds 255; both widths and version-1 files load back`` () =
    let pile (n: int) = Array.init n (fun i -> ev 1 0 i 1)

    let setOf (samples: Event[][]) =
        {
            Name = "pile"
            Samples = samples
            Labels = Array.init samples.Length (fun i -> i % 2)
            Width = 3
            Height = 2
            Classes = 2
        }

    let o = opts 1 ByCount
    let small = Frames.integrateSet o (setOf [| pile 255; pile 3 |])
    let large = Frames.integrateSet o (setOf [| pile 3; pile 300 |])
    Assert.That(small.Counts.ElementSize, Eq.To 1)
    Assert.That(large.Counts.ElementSize, Eq.To 2, "a count of 300 needs two bytes")
    Assert.That(small.Counts.ToArray() |> Array.max, Eq.To 255)
    Assert.That(large.Counts.ToArray() |> Array.max, Eq.To 300)

    let source = large :> ISampleSource
    let dst = Array.zeroCreate<float32> 12
    source.CopySample(1, dst, 0)
    Assert.That(Array.max dst, Eq.To 300.0f)

    let dir = tempDir ()

    for name, f in [ "small", small; "large", large ] do
        let path = Path.Combine(dir, name + ".bin")
        Frames.save path f
        let back = Frames.load path
        Assert.That(back.Counts.ElementSize, Eq.To f.Counts.ElementSize, name)
        Assert.That(back.Counts.ToArray(), Eq.To(f.Counts.ToArray()), name)

    // A version-1 file: "SNNFRM01", six int32 and uint16 counts, no bytes-per-count field.
    let v1 = Path.Combine(dir, "v1.bin")

    do
        use w = new BinaryWriter(File.Create v1)
        w.Write(Text.Encoding.ASCII.GetBytes "SNNFRM01")

        for v in [ 2; 1; 2; 2; 3; 2; 1; 0 ] do
            w.Write(v: int)

        for c in large.Counts.ToArray() do
            w.Write(uint16 c)

    Assert.That((Frames.load v1).Counts.ToArray(), Eq.To(large.Counts.ToArray()))
    // Version-1 counts that fit in a byte are narrowed on load.
    let v1Small = Path.Combine(dir, "v1-small.bin")
    let header = File.ReadAllBytes(v1)[.. 8 + 4 * 8 - 1]

    File.WriteAllBytes(
        v1Small,
        Array.append
            header
            (small.Counts.ToArray()
             |> Array.collect (fun c -> BitConverter.GetBytes(uint16 c)))
    )

    let narrowed = Frames.load v1Small
    Assert.That(narrowed.Counts.ElementSize, Eq.To 1)
    Assert.That(narrowed.Counts.ToArray(), Eq.To(small.Counts.ToArray()))
    // A version-2 file whose bytes-per-count field is neither 1 nor 2 is refused by name.
    let bad = Path.Combine(dir, "small.bin")
    let bytes = File.ReadAllBytes bad
    bytes[32] <- 3uy
    File.WriteAllBytes(bad, bytes)
    assertBadFile bad (Some 32L) [ "bytes per count" ] (fun () -> box (Frames.load bad))

// ---------------------------------------------------------------- Augmentation

let sample () =
    Array.init (2 * 5 * 4) (fun i -> float32 (i + 1))

[<Property(MaxTest = 60)>]
let ``random crop equals a shift within the padding with zero fill`` (seed: int) (pad: byte) =
    let pad = int pad % 4
    let x = sample ()
    let y = Array.append [| -1.0f |] (Array.copy x)
    (Augment.randomCrop 2 5 4 pad) (Rng.create seed) y 1

    let shifted oy ox =
        Array.init 40 (fun k ->
            let c, r = k / 20, k % 20
            let yy, xx = r / 4 + oy, r % 4 + ox

            if yy >= 0 && yy < 5 && xx >= 0 && xx < 4 then
                x[c * 20 + yy * 4 + xx]
            else
                0.0f)

    y[0] = -1.0f
    && [
        for oy in -pad .. pad do
            for ox in -pad .. pad -> shifted oy ox
       ]
       |> List.contains y[1..]

[<Test>]
let ``crop, flip and cutout are seeded; flip mirrors rows; cutout clears at most a square`` () =
    let run (t: SampleTransform) seed =
        let x = sample ()
        t (Rng.create seed) x 0
        x

    let crop = Augment.randomCrop 2 5 4 2
    Assert.That(run crop 7, Eq.To(run crop 7))
    let flip = Augment.horizontalFlip 2 5 4 1.0f
    Assert.That((run flip 0)[0..3], Eq.To [| 4.0f; 3.0f; 2.0f; 1.0f |])
    Assert.That(run (Augment.horizontalFlip 2 5 4 0.0f) 0, Eq.To(sample ()))
    let cut = run (Augment.cutout 2 5 4 2) 3
    let zeros = cut |> Array.filter ((=) 0.0f) |> Array.length
    Assert.That(zeros, Is.GreaterThan 0)
    Assert.That(zeros, Is.LessThanOrEqualTo 8)
    Assert.That(zeros % 2, Eq.To 0)
    let norm = run (Augment.normalize 5 4 [| 1.0f; 21.0f |] [| 2.0f; 4.0f |]) 0
    Assert.That((norm[0], norm[20]), Eq.To((0.0f, 0.0f)))
    Assert.That((norm[1], norm[21]), Eq.To((0.5f, 0.25f)))
    // Composition draws independently per transform and is seeded.
    let both = Augment.compose [ crop; Augment.cutout 2 5 4 2 ]
    Assert.That(run both 11, Eq.To(run both 11))

[<Test>]
let ``augmentation inside batching is reproducible per epoch`` () =
    let s = DataBatchingTests.toySet 12

    let t =
        Augment.compose [ Augment.randomCrop 1 3 2 1; Augment.horizontalFlip 1 3 2 0.5f ]

    let run prefetch =
        Batching.create
            { Batching.options 4 9 with
                Transform = Some t
                Prefetch = prefetch
            }
            s
        |> fun b -> [ for x in b.Epoch 3 -> x.Inputs.ToArray() ]

    Assert.That(run 0, Eq.To(run 2))

[<Test>]
let ``event flips and shifts`` () =
    let es = [| ev 0 0 1 1; ev 33 10 2 0 |]
    Assert.That(Augment.flipEventsX 34 es, Eq.To [| ev 33 0 1 1; ev 0 10 2 0 |])
    Assert.That(Augment.flipEventsY 34 es, Eq.To [| ev 0 33 1 1; ev 33 23 2 0 |])
    Assert.That(Augment.flipEventsX 34 (Augment.flipEventsX 34 es), Eq.To es)
    Assert.That(Augment.shiftEvents 1 2 34 34 es, Eq.To [| ev 1 2 1 1 |])
    let r = Augment.randomShiftEvents (Rng.create 3) 2 34 34 es
    Assert.That(r, Eq.To(Augment.randomShiftEvents (Rng.create 3) 2 34 34 es))
    Assert.That(Augment.randomFlipEvents (Rng.create 0) 1.0f 34 es, Eq.To(Augment.flipEventsX 34 es))

// ---------------------------------------------------------------- Robustness properties

[<Property(Arbitrary = [| typeof<MutationArbs> |], MaxTest = 150)>]
let ``event readers only ever raise DataFormatException, never hang, and allocate in proportion`` (m: Mutation) =
    let atis =
        let p = Path.Combine(tempDir (), "v.bin")
        Events.writeAtis p [| for i in 0..40 -> ev (i % 34) (i % 30) (i * 10) (i % 2) |]
        File.ReadAllBytes p

    let csv =
        Encoding.ASCII.GetBytes "class,startTime_usec,endTime_usec\n1,0,300\n2,300,900\n"

    let frames =
        let dir = tempDir ()

        Frames.cached
            dir
            (opts 2 ByCount)
            {
                Name = "f"
                Samples = [| [| ev 0 0 0 1 |] |]
                Labels = [| 0 |]
                Width = 2
                Height = 2
                Classes = 1
            }
        |> ignore

        File.ReadAllBytes(Directory.GetFiles(dir)[0])

    let check (reader: string -> unit) (valid: byte[]) name =
        let b = mutate valid m
        assertRobust reader (write name b) b.LongLength

    check (fun p -> Events.readNMnist p |> ignore) atis "a.bin"
    && check (fun p -> Events.readNCaltech101 p |> ignore) atis "a.bin"
    && check (fun p -> Events.readCifar10Dvs p |> ignore) validAedat2 "c.aedat"
    && check (fun p -> Events.readAedat2 Davis 240 180 p |> ignore) validAedat2 "c.aedat"
    && check (fun p -> Events.readAedat31 128 128 p |> ignore) validAedat3 "g.aedat"
    && check (fun p -> Events.readGestureLabels p |> ignore) csv "l.csv"
    && check (fun p -> Frames.load p |> ignore) frames "f.bin"

[<Test>]
let ``real Fashion-MNIST images become emulated event frames end to end`` () =
    if not (Directory.Exists "/usr/share/datasets/fashion-mnist") then
        Assert.Ignore "Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)"

    let test =
        Datasets.fashionMnist
            { Fetch.offline with
                CacheDir = Some(tempDir ())
            }
            false

    let set = Emulation.emulateSet Emulation.defaults (ImageSet.subset test [| 0..15 |])
    Assert.That(set.Samples |> Array.forall (fun s -> s.Length > 100), Is.True)
    let b = Batching.create (Batching.options 8 0) (Frames.source (opts 10 ByCount) set)
    let shapes = [ for x in b.Epoch 0 -> x.Inputs.Shape ]
    Assert.That(shapes, Eq.To [ [| 8; 10; 2; 34; 34 |]; [| 8; 10; 2; 34; 34 |] ])
