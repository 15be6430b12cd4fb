module SnnSpec.Tests.DataBatchingTests

open System
open NUnit.Framework
open FsCheck.NUnit
open SnnSpec
open SnnSpec.Data
open SnnSpec.Tests.TestUtil
open SnnSpec.Tests.Generators
open SnnSpec.Tests.DataStaticTests

let toySet n =
    ImageSet.create "toy" (syntheticImages n 3 2) (Array.init n (fun i -> i % 7)) 1 3 2 7

/// (labels, first pixel of each sample) of every batch of an epoch, copied out.
let collect (b: Batcher) epoch =
    [
        for batch in b.Epoch epoch ->
            let x = batch.Inputs.ToArray()
            batch.Inputs.Shape, Array.copy batch.Labels, Array.init batch.Labels.Length (fun j -> x[j * 6])
    ]

[<Property(Arbitrary = [| typeof<Arbitraries> |], MaxTest = 25)>]
let ``every sample appears once per epoch with its own label and pixels scaled to [0, 1]`` (Seed seed) =
    let n = 1 + seed % 50
    let s = toySet n

    let opts =
        { Batching.options (1 + seed % 9) seed with
            Prefetch = seed % 3
        }

    let b = Batching.create opts s
    let batches = collect b (seed % 5)

    let all =
        batches
        |> List.collect (fun (_, l, p) -> List.zip (List.ofArray l) (List.ofArray p))
    // Sample i's first pixel is (i·7) mod 256 / 255, which identifies i for n ≤ 36; check labels agree.
    let ids =
        all
        |> List.map (fun (l, p) ->
            let i = [ 0 .. n - 1 ] |> List.find (fun i -> float32 ((i * 7) % 256) / 255.0f = p)
            Assert.That(l, Eq.To(i % 7))
            i)

    (n > 36 || List.sort ids = [ 0 .. n - 1 ])
    && all.Length = n
    && batches.Length = b.BatchesPerEpoch
    && batches |> List.forall (fun (shape, l, _) -> shape = [| l.Length; 1; 3; 2 |])

[<Test>]
let ``epochs are reproducible for a key, differ between epochs, and prefetch changes nothing`` () =
    let s = toySet 30

    let run prefetch epoch =
        collect
            (Batching.create
                { Batching.options 4 11 with
                    Prefetch = prefetch
                }
                s)
            epoch
        |> List.map (fun (_, l, p) -> l, p)

    Assert.That(run 0 1, Eq.To(run 3 1))
    Assert.That(run 2 1, Is.Not.EqualTo(run 2 2))

    let plain =
        collect
            (Batching.create
                { Batching.options 4 11 with
                    Shuffle = false
                }
                s)
            0

    let _, l0, _ = plain.Head
    Assert.That(l0, Eq.To [| 0; 1; 2; 3 |])

[<Test>]
let ``drop-last leaves out the short batch; otherwise it comes last with its own size`` () =
    let s = toySet 10
    let kept = collect (Batching.create (Batching.options 4 0) s) 0
    Assert.That(kept |> List.map (fun (sh, _, _) -> sh[0]), Eq.To [ 4; 4; 2 ])

    let dropped =
        collect
            (Batching.create
                { Batching.options 4 0 with
                    DropLast = true
                }
                s)
            0

    Assert.That(dropped |> List.map (fun (sh, _, _) -> sh[0]), Eq.To [ 4; 4 ])

    let none =
        collect
            (Batching.create
                { Batching.options 16 0 with
                    DropLast = true
                }
                s)
            0

    Assert.That(none, Is.Empty)

[<Test>]
let ``filling batches allocates nothing per sample`` () =
    let n = 20000
    let s = toySet n

    let b =
        Batching.create
            { Batching.options 64 3 with
                Prefetch = 0
                Shuffle = false
            }
            s
    // Warm up (JIT, first epoch).
    for _ in b.Epoch 0 do
        ()

    let before = GC.GetAllocatedBytesForCurrentThread()

    for _ in b.Epoch 1 do
        ()

    let allocated = GC.GetAllocatedBytesForCurrentThread() - before
    // The order array (4n bytes) plus a small record per batch; nothing proportional to pixels.
    Assert.That(allocated, Is.LessThan(4L * int64 n + 200L * int64 b.BatchesPerEpoch + 8192L))

[<Test>]
let ``a failing transform surfaces on the caller's thread as SnnSpecException`` () =
    let s = toySet 10
    let boom: SampleTransform = fun _ _ _ -> failwith "boom"

    let b =
        Batching.create
            { Batching.options 2 0 with
                Transform = Some boom
            }
            s

    let ex =
        Assert.Catch<SnnSpecException>(fun () ->
            for _ in b.Epoch 0 do
                ())

    Assert.That(ex.Message, Does.Contain "boom")
    // The batcher is usable again after the failed epoch.
    Assert.That(collect (Batching.create (Batching.options 2 0) s) 0 |> List.length, Eq.To 5)

[<Test>]
let ``abandoning an epoch early stops the prefetch thread and frees the batcher`` () =
    let b = Batching.create (Batching.options 2 0) (toySet 100)
    let first = b.Epoch 0 |> Seq.take 3 |> Seq.map (fun x -> x.Index) |> List.ofSeq
    Assert.That(first, Eq.To [ 0; 1; 2 ])
    Assert.That(b.Epoch 1 |> Seq.length, Eq.To 50)
