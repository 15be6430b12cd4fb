module SnnSpec.Tests.DataStaticTests

open System
open System.IO
open System.IO.Compression
open System.Threading.Tasks
open NUnit.Framework
open FsCheck
open FsCheck.FSharp
open FsCheck.NUnit
open SnnSpec
open SnnSpec.Data
open SnnSpec.Tests.TestUtil

/// A fresh temporary folder per call.
let tempDir () =
    let d =
        Path.Combine(Path.GetTempPath(), "snnspec-test-" + Guid.NewGuid().ToString("N"))

    Directory.CreateDirectory d |> ignore
    d

/// Asserts f raises DataFormatException naming the file, with the given offset when one is given,
/// and a fix.
let assertBadFile (path: string) (offset: int64 option) (fragments: string list) (f: unit -> obj) =
    let ex = Assert.Catch<DataFormatException>(fun () -> f () |> ignore)
    Assert.That(ex.File, Eq.To path)
    Assert.That(ex.Message, Does.Contain path)
    Assert.That(ex.Message, Does.Contain "Fix:")

    match offset with
    | Some o ->
        Assert.That(ex.Offset, Eq.To o)
        Assert.That(ex.Message, Does.Contain(sprintf "byte offset %d" o))
    | None -> ()

    for fr in fragments do
        Assert.That(ex.Message, Does.Contain fr)

/// Images with pixel (i, y, x) = (i·7 + y·3 + x) mod 256 and labels i mod classes.
let syntheticImages n h w =
    Array.init (n * h * w) (fun k ->
        let i, r = k / (h * w), k % (h * w)
        byte ((i * 7 + (r / w) * 3 + r % w) % 256))

let writeIdxPair dir (gz: bool) n h w classes =
    let ext = if gz then ".gz" else ""
    let img = Path.Combine(dir, "img-idx3-ubyte" + ext)
    let lab = Path.Combine(dir, "lab-idx1-ubyte" + ext)
    let px = syntheticImages n h w
    let labels = Array.init n (fun i -> byte (i % classes))
    Idx.write img [| n; h; w |] px
    Idx.write lab [| n |] labels
    img, lab, px, labels

/// Runs a reader on its own thread with a time limit; returns the exception it threw (or null) and
/// the bytes it allocated.
let runGuarded (f: unit -> unit) =
    let t =
        Task.Run(fun () ->
            let before = GC.GetAllocatedBytesForCurrentThread()

            let err =
                try
                    f ()
                    null
                with e ->
                    e

            err, GC.GetAllocatedBytesForCurrentThread() - before)

    if not (t.Wait(TimeSpan.FromSeconds 20.0)) then
        Assert.Fail "the reader did not finish within 20 s"

    t.Result

/// Checks the reader either succeeds or raises DataFormatException, allocating at most a constant
/// factor of the bytes the file holds (decompressed for gzip) plus 1 MB.
let assertRobust (reader: string -> unit) (path: string) (justified: int64) =
    let err, allocated = runGuarded (fun () -> reader path)

    match err with
    | null
    | :? DataFormatException -> ()
    | e -> Assert.Fail(sprintf "%s raised %s: %s" path (e.GetType().Name) e.Message)

    if allocated > 8L * justified + (1L <<< 20) then
        Assert.Fail(sprintf "%s: allocated %d bytes for a %d-byte file" path allocated justified)

    true

// ---------------------------------------------------------------- IDX

[<Test>]
let ``IDX images and labels round-trip raw and gzip`` () =
    let dir = tempDir ()

    for gz in [ false; true ] do
        let img, lab, px, labels = writeIdxPair dir gz 12 5 4 10
        let s = Idx.load "t" 10 IdxLayout.RowMajor img lab
        Assert.That(s.Count, Eq.To 12)
        Assert.That((s.Channels, s.Height, s.Width), Eq.To((1, 5, 4)))
        Assert.That(s.Pixels, Eq.To px)
        Assert.That(s.Labels, Eq.To(Array.map int labels))

[<Test>]
let ``EMNIST layout transposes each image`` () =
    let dir = tempDir ()
    let p = Path.Combine(dir, "e-idx3-ubyte")
    // The 3×2 image [[0, 1], [2, 3], [4, 5]] stored column-major: columns (0, 2, 4) and (1, 3, 5).
    Idx.write p [| 1; 3; 2 |] [| 0uy; 2uy; 4uy; 1uy; 3uy; 5uy |]
    let _, h, w, px = Idx.readImages IdxLayout.Transposed p
    Assert.That((h, w), Eq.To((3, 2)))
    Assert.That(px, Eq.To [| 0uy; 1uy; 2uy; 3uy; 4uy; 5uy |])

[<Test>]
let ``IDX truncated file names the file, the offset and the fix`` () =
    let dir = tempDir ()
    let img, _, _, _ = writeIdxPair dir false 4 3 3 10
    let bytes = File.ReadAllBytes img
    File.WriteAllBytes(img, bytes[.. bytes.Length - 5])
    assertBadFile img (Some(int64 (bytes.Length - 4))) [ "truncated" ] (fun () -> box (Idx.readImages RowMajor img))
    File.WriteAllBytes(img, bytes[..9])
    assertBadFile img (Some 10L) [ "header" ] (fun () -> box (Idx.readImages RowMajor img))

[<Test>]
let ``IDX truncated gzip names the decompressed offset`` () =
    let dir = tempDir ()
    let raw = Path.Combine(dir, "raw")
    Idx.write raw [| 10; 4; 4 |] (syntheticImages 10 4 4)
    let bytes = File.ReadAllBytes raw
    let gz = Path.Combine(dir, "short-idx3-ubyte.gz")

    do
        use o = File.Create gz
        use g = new GZipStream(o, CompressionLevel.Optimal)
        g.Write(bytes, 0, bytes.Length - 20)

    assertBadFile gz (Some(int64 (bytes.Length - 20))) [ "ends after" ] (fun () -> box (Idx.readImages RowMajor gz))

[<Test>]
let ``IDX wrong magic number`` () =
    let dir = tempDir ()
    let img, _, _, _ = writeIdxPair dir false 2 2 2 10
    let b = File.ReadAllBytes img
    b[0] <- 0x50uy
    File.WriteAllBytes(img, b)
    assertBadFile img (Some 0L) [ "magic number" ] (fun () -> box (Idx.read img))
    b[0] <- 0uy
    b[2] <- 0x0Duy
    File.WriteAllBytes(img, b)
    assertBadFile img (Some 2L) [ "element type" ] (fun () -> box (Idx.read img))

[<Test>]
let ``IDX header dimensions that disagree with the length or would need absurd memory`` () =
    let dir = tempDir ()
    let p = Path.Combine(dir, "lie-idx3-ubyte")
    // Declares 1000 images of 28×28 but holds 2.
    let b = Array.zeroCreate<byte>(16 + 2 * 784)
    b[2] <- 8uy
    b[3] <- 3uy
    b[6] <- 0x03uy
    b[7] <- 0xE8uy
    b[11] <- 28uy
    b[15] <- 28uy
    File.WriteAllBytes(p, b)
    assertBadFile p (Some(int64 b.Length)) [ "declares"; "truncated" ] (fun () -> box (Idx.read p))
    // A 40-byte gzip declaring 2^31 × 2^31 × 255 bytes must fail before allocating.
    let gz = Path.Combine(dir, "huge-idx3-ubyte.gz")

    do
        use o = File.Create gz
        use g = new GZipStream(o, CompressionLevel.Optimal)

        g.Write(
            [|
                0uy
                0uy
                8uy
                3uy
                0x7Fuy
                0xFFuy
                0xFFuy
                0xFFuy
                0x7Fuy
                0xFFuy
                0xFFuy
                0xFFuy
                0uy
                0uy
                0uy
                255uy
            |],
            0,
            16
        )

    let err, allocated = runGuarded (fun () -> Idx.read gz |> ignore)
    Assert.That(err, Is.InstanceOf<DataFormatException>())
    Assert.That(err.Message, Does.Contain "more than")
    Assert.That(allocated, Is.LessThan(1L <<< 20))

[<Test>]
let ``IDX label count must match the images and labels must be in range`` () =
    let dir = tempDir ()
    let img, _, _, _ = writeIdxPair dir false 6 2 2 10
    let lab5 = Path.Combine(dir, "five-idx1-ubyte")
    Idx.write lab5 [| 5 |] [| 0uy; 1uy; 2uy; 3uy; 4uy |]
    assertBadFile lab5 (Some 4L) [ "5 labels"; "6 images" ] (fun () -> box (Idx.load "t" 10 RowMajor img lab5))
    let bad = Path.Combine(dir, "bad-idx1-ubyte")
    Idx.write bad [| 6 |] [| 0uy; 1uy; 2uy; 12uy; 4uy; 5uy |]
    assertBadFile bad (Some 11L) [ "label 12 of sample 3" ] (fun () -> box (Idx.load "t" 10 RowMajor img bad))
    // An images file passed as labels.
    assertBadFile img (Some 3L) [ "labels file" ] (fun () -> box (Idx.readLabels 10 img))

// ---------------------------------------------------------------- CIFAR

let writeCifar (path: string) (labelBytes: int) (labels: byte[][]) =
    use o = File.Create path

    labels
    |> Array.iteri (fun i ls ->
        o.Write(ls, 0, labelBytes)
        o.Write(Array.init 3072 (fun k -> byte ((i + k) % 251)), 0, 3072))

[<Test>]
let ``CIFAR-10 and CIFAR-100 binary batches load planes and labels`` () =
    let dir = tempDir ()
    let a = Path.Combine(dir, "data_batch_1.bin")
    let b = Path.Combine(dir, "data_batch_2.bin")
    writeCifar a 1 [| [| 3uy |]; [| 9uy |] |]
    writeCifar b 1 [| [| 0uy |] |]
    let s = Cifar.load10 [ a; b ]
    Assert.That((s.Count, s.Channels, s.Height, s.Width, s.Classes), Eq.To((3, 3, 32, 32, 10)))
    Assert.That(s.Labels, Eq.To [| 3; 9; 0 |])
    Assert.That(s.Pixels[3072 + 1025], Eq.To(byte ((1 + 1025) % 251)))
    let c = Path.Combine(dir, "train.bin")
    writeCifar c 2 [| [| 19uy; 99uy |]; [| 0uy; 5uy |] |]
    Assert.That((Cifar.load100 Coarse [ c ]).Labels, Eq.To [| 19; 0 |])
    Assert.That((Cifar.load100 Fine [ c ]).Labels, Eq.To [| 99; 5 |])
    Assert.That((Cifar.load100 Fine [ c ]).Classes, Eq.To 100)

[<Test>]
let ``CIFAR truncated records and out-of-range labels`` () =
    let dir = tempDir ()
    let a = Path.Combine(dir, "data_batch_1.bin")
    writeCifar a 1 [| [| 3uy |]; [| 4uy |] |]
    let bytes = File.ReadAllBytes a
    File.WriteAllBytes(a, bytes[.. bytes.Length - 11])
    assertBadFile a (Some 3073L) [ "not a whole number" ] (fun () -> box (Cifar.load10 [ a ]))
    writeCifar a 1 [| [| 3uy |]; [| 10uy |] |]
    assertBadFile a (Some 3073L) [ "label 10 of record 1" ] (fun () -> box (Cifar.load10 [ a ]))
    // A CIFAR-100 file read as CIFAR-10 has the wrong record size.
    writeCifar a 2 [| [| 3uy; 50uy |] |]
    assertBadFile a (Some 3073L) [ "3073-byte records" ] (fun () -> box (Cifar.load10 [ a ]))

// ---------------------------------------------------------------- Fetch

let specFor (dir: string) (files: (string * byte[]) list) =
    for name, bytes in files do
        File.WriteAllBytes(Path.Combine(dir, name), bytes)

    {
        Name = "toy"
        Files =
            files
            |> List.map (fun (name, bytes) ->
                {
                    Name = name
                    Sha256 = Convert.ToHexStringLower(Security.Cryptography.SHA256.HashData bytes)
                })
            |> Array.ofList
        SystemDirs = [||]
        NpmPackage = None
        Urls = [||]
    }

let offlineIn cache =
    { Fetch.offline with
        CacheDir = Some cache
        UseSystemDirs = false
    }

[<Test>]
let ``fetch copies verified files from the user's directory into the cache atomically`` () =
    let src = tempDir ()
    let cache = tempDir ()

    let spec =
        specFor src [ "a.bin", [| 1uy; 2uy; 3uy |]; "b.bin", Array.create 5000 7uy ]

    let dir =
        Fetch.fetch
            { offlineIn cache with
                UserDir = Some src
            }
            spec

    Assert.That(dir, Eq.To(Path.Combine(cache, "toy")))
    Assert.That(File.ReadAllBytes(Path.Combine(dir, "b.bin")), Eq.To(Array.create 5000 7uy))
    Assert.That(Directory.GetFiles(dir, "*.part"), Is.Empty)
    // Second time the cache alone suffices.
    Directory.Delete(src, true)
    Assert.That(Fetch.fetch (offlineIn cache) spec, Eq.To dir)

[<Test>]
let ``fetch decompresses name.gz when the raw name is wanted`` () =
    let src = tempDir ()
    let cache = tempDir ()
    let raw = Array.init 3000 byte
    let spec = specFor src [ "c.bin", raw ]
    File.Delete(Path.Combine(src, "c.bin"))

    do
        use o = File.Create(Path.Combine(src, "c.bin.gz"))
        use g = new GZipStream(o, CompressionLevel.Optimal)
        g.Write(raw, 0, raw.Length)

    let dir =
        Fetch.fetch
            { offlineIn cache with
                UserDir = Some src
            }
            spec

    Assert.That(File.ReadAllBytes(Path.Combine(dir, "c.bin")), Eq.To raw)

[<Test>]
let ``a checksum mismatch is rejected and every attempt is listed with how to fix it`` () =
    let src = tempDir ()
    let cache = tempDir ()
    let spec = specFor src [ "a.bin", [| 1uy; 2uy; 3uy |] ]
    File.WriteAllBytes(Path.Combine(src, "a.bin"), [| 1uy; 2uy; 4uy |])

    let ex =
        Assert.Catch<FetchException>(fun () ->
            Fetch.fetch
                { offlineIn cache with
                    UserDir = Some src
                }
                spec
            |> ignore)

    Assert.That(ex, Is.InstanceOf<SnnSpecException>())
    Assert.That(ex.Message, Does.Contain("directory " + src))
    Assert.That(ex.Message, Does.Contain "SHA-256")
    Assert.That(ex.Message, Does.Contain "by hand")
    Assert.That(File.Exists(Path.Combine(cache, "toy", "a.bin")), Is.False)
    Assert.That(Directory.GetFiles(Path.Combine(cache, "toy")), Is.Empty)
    // Verification on its own raises DataFormatException naming file, offset and fix.
    let p = Path.Combine(src, "a.bin")
    assertBadFile p (Some 3L) [ "SHA-256"; spec.Files[0].Sha256 ] (fun () -> box (Fetch.verify spec.Files[0].Sha256 p))

[<Test>]
let ``a corrupted cached copy is replaced`` () =
    let src = tempDir ()
    let cache = tempDir ()
    let spec = specFor src [ "a.bin", [| 9uy; 8uy |] ]
    let dir = Path.Combine(cache, "toy")
    Directory.CreateDirectory dir |> ignore
    File.WriteAllBytes(Path.Combine(dir, "a.bin"), [| 0uy |])

    Fetch.fetch
        { offlineIn cache with
            UserDir = Some src
        }
        spec
    |> ignore

    Assert.That(File.ReadAllBytes(Path.Combine(dir, "a.bin")), Eq.To [| 9uy; 8uy |])

[<Test>]
let ``tarball extraction finds files by name inside package folders`` () =
    let dir = tempDir ()
    let tgz = Path.Combine(dir, "pkg.tgz")

    do
        use o = File.Create tgz
        use g = new GZipStream(o, CompressionLevel.Optimal)
        use w = new Formats.Tar.TarWriter(g)

        for name, content in [ "package/data/x.bin", [| 1uy; 2uy |]; "package/readme.md", [| 65uy |] ] do
            let e = Formats.Tar.PaxTarEntry(Formats.Tar.TarEntryType.RegularFile, name)
            e.DataStream <- new MemoryStream(content: byte[])
            w.WriteEntry e

    let out = tempDir ()
    let found = Fetch.extractFromTarball tgz [ "x.bin"; "y.bin" ] out
    Assert.That(found, Eq.To [ "x.bin" ])
    Assert.That(File.ReadAllBytes(Path.Combine(out, "x.bin")), Eq.To [| 1uy; 2uy |])

[<Test>]
let ``the cache root honours SNNSPEC_DATA`` () =
    let old = Environment.GetEnvironmentVariable "SNNSPEC_DATA"

    try
        Environment.SetEnvironmentVariable("SNNSPEC_DATA", "/tmp/somewhere")
        Assert.That(Fetch.cacheRoot (), Eq.To "/tmp/somewhere")
        Environment.SetEnvironmentVariable("SNNSPEC_DATA", null)
        Assert.That(Fetch.cacheRoot (), Does.EndWith "snnspec")
    finally
        Environment.SetEnvironmentVariable("SNNSPEC_DATA", old)

[<Test>]
let ``real Fashion-MNIST from the system package: counts, labels and SHA-256`` () =
    let sys = "/usr/share/datasets/fashion-mnist"

    if not (Directory.Exists sys) then
        Assert.Ignore "Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)"

    for f in Datasets.fashionMnistSpec.Files do
        Assert.That(Fetch.sha256 (Path.Combine(sys, f.Name)), Eq.To f.Sha256, f.Name)

    let opts =
        { Fetch.offline with
            CacheDir = Some(tempDir ())
        }

    for train, count in [ true, 60000; false, 10000 ] do
        let s = Datasets.fashionMnist opts train
        Assert.That((s.Count, s.Height, s.Width, s.Classes), Eq.To((count, 28, 28, 10)))
        Assert.That(s.Labels |> Array.forall (fun l -> l >= 0 && l < 10), Is.True)
        Assert.That(s.Labels |> Array.distinct |> Array.length, Eq.To 10)
        // Every class has the same count in both splits.
        Assert.That(s.Labels |> Array.countBy id |> Array.map snd |> Array.distinct, Eq.To [| count / 10 |])

// ---------------------------------------------------------------- Robustness properties

/// Valid sample files of each static format, mutated or replaced by random bytes.
type Mutation =
    | Random of byte[]
    | Flip of index: int * value: byte
    | Cut of keep: int

let genMutation =
    Gen.oneof
        [
            Gen.arrayOf (Gen.choose (0, 255) |> Gen.map byte) |> Gen.map Random
            Gen.zip (Gen.choose (0, 4000)) (Gen.choose (0, 255))
            |> Gen.map (fun (i, v) -> Flip(i, byte v))
            Gen.choose (0, 4000) |> Gen.map Cut
        ]

type MutationArbs =
    static member Mutation() = Arb.fromGen genMutation

let mutate (valid: byte[]) m =
    match m with
    | Random b -> b
    | Flip(i, v) ->
        let c = Array.copy valid

        if c.Length > 0 then
            c[i % c.Length] <- v

        c
    | Cut k -> valid[.. (k % (valid.Length + 1)) - 1]

let gzipBytes (b: byte[]) =
    use ms = new MemoryStream()

    do
        use g = new GZipStream(ms, CompressionLevel.Fastest)
        g.Write(b, 0, b.Length)

    ms.ToArray()

let validIdx =
    let dir = tempDir ()
    let img, lab, _, _ = writeIdxPair dir false 5 6 6 10
    File.ReadAllBytes img, File.ReadAllBytes lab

let validCifar =
    let dir = tempDir ()
    let p = Path.Combine(dir, "c.bin")
    writeCifar p 1 [| [| 1uy |] |]
    File.ReadAllBytes p

let robustDir = tempDir ()

[<Property(Arbitrary = [| typeof<MutationArbs> |], MaxTest = 150)>]
let ``static readers only ever raise DataFormatException, never hang, and allocate in proportion`` (m: Mutation) =
    let img, lab = validIdx

    let write name (b: byte[]) =
        let p = Path.Combine(robustDir, Guid.NewGuid().ToString("N") + name)
        File.WriteAllBytes(p, b)
        p

    let mi = mutate img m
    let ml = mutate lab m
    let mc = mutate validCifar m
    let gz = gzipBytes mi

    assertRobust (fun p -> Idx.readImages RowMajor p |> ignore) (write "-idx" mi) mi.LongLength
    && assertRobust (fun p -> Idx.readLabels 10 p |> ignore) (write "-idx" ml) ml.LongLength
    && assertRobust (fun p -> Idx.read p |> ignore) (write ".gz" gz) (max gz.LongLength mi.LongLength)
    && assertRobust (fun p -> Idx.read p |> ignore) (write ".gz" (mutate (gzipBytes img) m)) (4L * img.LongLength)
    && assertRobust (fun p -> Cifar.load10 [ p ] |> ignore) (write ".bin" mc) mc.LongLength
    && assertRobust (fun p -> Cifar.load100 Fine [ p ] |> ignore) (write ".bin" mc) mc.LongLength
