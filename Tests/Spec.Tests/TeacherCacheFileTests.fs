module SnnSpec.Tests.TeacherCacheFileTests

open System
open System.IO
open NUnit.Framework
open SnnSpec
open SnnSpec.Data
open SnnSpec.IO
open SnnSpec.Training
open SnnSpec.Tests.TestUtil
open SnnSpec.Tests.TrainTests

let private tempDir () =
    let d =
        Path.Combine(Path.GetTempPath(), "snnspec-tcache-" + Guid.NewGuid().ToString("N"))

    Directory.CreateDirectory d |> ignore
    d

let private probes =
    { ProbeRequest.None with
        Membranes = set [ "lif2" ]
        Spikes = set [ "lif1" ]
        Taps = set [ "feature" ]
    }

let private setup () =
    let data = templates 5 4 37 0.2
    let teacher = Model.init 2 (ExecutionMode.Snn 3) (Zoo.convNet (cfg8 4))
    data, teacher

let private assertSameOutputs (a: TeacherCache) (b: TeacherCache) =
    let idx = Array.init a.Count id
    let x = TeacherCache.lookup a idx
    let y = TeacherCache.lookup b idx
    Assert.That(y.Logits.ToArray(), Eq.To(x.Logits.ToArray()), "logits")

    for KeyValue(n, t) in x.Membranes do
        Assert.That(y.Membranes[n].ToArray(), Eq.To(t.ToArray()), "membrane " + n)

    for KeyValue(n, t) in x.Spikes do
        Assert.That(y.Spikes[n].ToArray(), Eq.To(t.ToArray()), "spikes " + n)

    for KeyValue(n, t) in x.Taps do
        Assert.That(y.Taps[n].ToArray(), Eq.To(t.ToArray()), "tap " + n)

[<TestCase(false)>]
[<TestCase(true)>]
let ``a saved teacher cache loads back bit-identical, at either precision`` (half: bool) =
    let data, teacher = setup ()

    let precision =
        if half then
            CachePrecision.Float16
        else
            CachePrecision.Float32

    let c = TeacherCache.build precision 8 teacher probes data
    let path = Path.Combine(tempDir (), "cache.safetensors")
    TeacherCacheFile.save path c
    let back = TeacherCacheFile.load path
    Assert.That(back.TeacherFingerprint, Is.EqualTo c.TeacherFingerprint)
    Assert.That(back.DataFingerprint, Is.EqualTo c.DataFingerprint)
    Assert.That(back.Count, Is.EqualTo c.Count)
    Assert.That(back.Bytes, Is.EqualTo c.Bytes)

    match back.Spikes["lif1"].Values with
    | Bits _ -> ()
    | v -> Assert.Fail(sprintf "spikes should stay bit-packed, got %A" (v.GetType()))

    assertSameOutputs c back
    // Packed spikes take an eighth of a byte each on disk.
    let spikeBits = int64 c.Count * int64 (Shape.numel c.Spikes["lif1"].Shape)
    let onDisk = (FileInfo path).Length
    Assert.That(onDisk, Is.LessThan(c.Bytes + 4096L))
    Assert.That(onDisk, Is.GreaterThan(spikeBits / 8L))

[<Test>]
let ``getOrBuild builds once, then loads; a changed teacher or data set gets its own file`` () =
    let data, teacher = setup ()
    let dir = tempDir ()

    let first =
        TeacherCacheFile.getOrBuild dir CachePrecision.Float32 8 teacher probes data

    Assert.That(first.Origin, Is.EqualTo CacheOrigin.Built)
    Assert.That(File.Exists first.Path)

    let second =
        TeacherCacheFile.getOrBuild dir CachePrecision.Float32 8 teacher probes data

    Assert.That(second.Origin, Is.EqualTo CacheOrigin.Loaded)
    Assert.That(second.Path, Is.EqualTo first.Path)
    assertSameOutputs first.Cache second.Cache
    Assert.That(TeacherCache.isValidFor teacher probes data second.Cache)

    let px = Array.copy data.Pixels
    px[3] <- px[3] + 1uy
    let changed = { data with Pixels = px }

    let third =
        TeacherCacheFile.getOrBuild dir CachePrecision.Float32 8 teacher probes changed

    Assert.That(third.Origin, Is.EqualTo CacheOrigin.Built)
    Assert.That(third.Path, Is.Not.EqualTo first.Path)
    Assert.That(TeacherCache.isValidFor teacher probes changed third.Cache)

    let other = Model.init 3 (ExecutionMode.Snn 3) (Zoo.convNet (cfg8 4))

    let fourth =
        TeacherCacheFile.getOrBuild dir CachePrecision.Float32 8 other probes data

    Assert.That(fourth.Path, Is.Not.EqualTo first.Path)
    Assert.That(Directory.GetFiles(dir, "*.safetensors").Length, Is.EqualTo 3)
    Assert.That(Directory.GetFiles(dir, "*.tmp").Length, Is.EqualTo 0)

[<Test>]
let ``a damaged cache file is rebuilt and replaced, and the result says why`` () =
    let data, teacher = setup ()
    let dir = tempDir ()

    let first =
        TeacherCacheFile.getOrBuild dir CachePrecision.Float16 8 teacher probes data

    let bytes = File.ReadAllBytes first.Path
    File.WriteAllBytes(first.Path, bytes[.. bytes.Length / 2])

    let again =
        TeacherCacheFile.getOrBuild dir CachePrecision.Float16 8 teacher probes data

    match again.Origin with
    | CacheOrigin.Rebuilt why -> Assert.That(why, Is.Not.Empty)
    | o -> Assert.Fail(sprintf "expected a rebuild, got %A" o)

    assertSameOutputs first.Cache again.Cache

    Assert.That(
        (TeacherCacheFile.getOrBuild dir CachePrecision.Float16 8 teacher probes data).Origin,
        Is.EqualTo CacheOrigin.Loaded
    )

[<Test>]
let ``loading a file that is not a teacher cache names the file and the problem`` () =
    let dir = tempDir ()
    let path = Path.Combine(dir, "model.safetensors")
    SafeTensors.write path [ StoredTensor.ofTensor "w" (Tensor.ones [| 2 |]) ] (Map [ "format", "something" ])

    assertRaises<CheckpointFormatException> [ "model.safetensors"; "format" ] (fun () ->
        box (TeacherCacheFile.load path))

[<Test>]
let ``training from a loaded cache file is bit-identical to training from the in-memory cache`` () =
    let data = templates 3 4 48 0.2
    let teacher = mlp 1.0f [ 32 ] 4 0
    let student = mlp 1.0f [ 32 ] 2 1

    let spec =
        DistillationSpec.create teacher [ student ] [ SpecTerm.logitKd 2.0f 1.0f ]

    let cfg = { quietConfig with Epochs = 2 }
    let b = batcher 16 true 1 data
    let probes = DistillationSpec.teacherProbes spec
    let inMemory = TeacherCache.build CachePrecision.Float32 16 teacher probes b.Source
    let dir = tempDir ()

    TeacherCacheFile.getOrBuild dir CachePrecision.Float32 16 teacher probes b.Source
    |> ignore

    let loaded =
        TeacherCacheFile.getOrBuild dir CachePrecision.Float32 16 teacher probes b.Source

    Assert.That(loaded.Origin, Is.EqualTo CacheOrigin.Loaded)

    let run c =
        (Trainer.fit
            { cfg with
                TeacherCache = TeacherCacheMode.Use c
            }
            spec
            (batcher 16 true 1 data)
            None)
            .Students.Head.Final.Parameters

    Assert.That(bits (run loaded.Cache), Eq.To(bits (run inMemory)))

[<TestCase(false, 100)>]
[<TestCase(true, 100)>]
[<TestCase(true, 8)>]
let ``outputs larger than the part size are split into parts and load back bit-identical``
    (half: bool)
    (partBytes: int)
    =
    let data, teacher = setup ()

    let precision =
        if half then
            CachePrecision.Float16
        else
            CachePrecision.Float32

    let c = TeacherCache.build precision 8 teacher probes data
    let path = Path.Combine(tempDir (), "parts.safetensors")
    TeacherCacheFile.saveWith partBytes path c
    let file = SafeTensors.read path
    Assert.That(file.Tensors |> List.exists (fun t -> t.Name = "membrane.lif2.part1"))
    Assert.That(file.Tensors |> List.exists (fun t -> t.Name = "spikes.lif1.part1"))
    Assert.That(file.Tensors |> List.forall (fun t -> t.Data.Length <= max 8 partBytes))
    let back = TeacherCacheFile.load path
    Assert.That(back.Bytes, Is.EqualTo c.Bytes)
    assertSameOutputs c back

    // A missing part is named.
    let damaged = file.Tensors |> List.filter (fun t -> t.Name <> "membrane.lif2.part1")

    SafeTensors.write path damaged file.Metadata

    assertRaises<CheckpointFormatException> [ "membrane.lif2.part1"; "missing" ] (fun () ->
        box (TeacherCacheFile.load path))
