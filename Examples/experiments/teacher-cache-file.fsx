// The disk teacher cache on real data (the figures in the closing note of the stop that added
// TeacherCacheFile). After `dotnet build -c Release`:
//
//   dotnet fsi Examples/experiments/teacher-cache-file.fsx <teacher.safetensors> [cache-dir]
//
// Caches the teacher's membranes at lif1, lif2 and lif_fc1 (F16) for the first 11000 MNIST
// training images, then times: building and saving, loading, one epoch of live teacher forwards
// and one epoch of cached lookups, in the same process.

#r "nuget: System.Numerics.Tensors, 10.0.0"
#r "../../Spec.FSharp/bin/Release/net10.0/SnnSpec.Spec.dll"

open System.Diagnostics
open SnnSpec
open SnnSpec.Data
open SnnSpec.Training
open SnnSpec.IO

let teacher = (Checkpoint.load fsi.CommandLineArgs[1]).Model

let dir =
    if fsi.CommandLineArgs.Length > 2 then
        fsi.CommandLineArgs[2]
    else
        System.IO.Path.Combine(System.IO.Path.GetTempPath(), "snnspec-teacher-cache")

let fitSet = ImageSet.subset (Datasets.mnist Fetch.defaults true) [| 0..10999 |]

let probes =
    { ProbeRequest.None with
        Membranes = set [ "lif1"; "lif2"; "lif_fc1" ]
    }

let time f =
    let sw = Stopwatch.StartNew()
    let r = f ()
    r, sw.Elapsed.TotalSeconds

let first, build =
    time (fun () -> TeacherCacheFile.getOrBuild dir CachePrecision.Float16 64 teacher probes fitSet)

let second, load =
    time (fun () -> TeacherCacheFile.getOrBuild dir CachePrecision.Float16 64 teacher probes fitSet)

let batches =
    Batching.create
        { Batching.options 32 0 with
            Shuffle = false
        }
        fitSet

let (), live =
    time (fun () ->
        for b in batches.Epoch 0 do
            Diff.noGrad (fun () ->
                use _ = TensorScope.Begin()

                Model.forward
                    { ForwardContext.Eval with
                        Probes = probes
                    }
                    teacher
                    b.Inputs
                |> ignore))

let order = batches.SampleOrder 0

let (), cached =
    time (fun () ->
        for b in batches.Epoch 0 do
            use _ = TensorScope.Begin()
            let start = b.Index * 32

            TeacherCache.lookup second.Cache order[start .. start + b.Labels.Length - 1]
            |> ignore)

printfn
    "first call %A (%.1f s), second call %A (%.1f s); file %.1f MB; live teacher epoch %.2f s, cached epoch %.2f s"
    first.Origin
    build
    second.Origin
    load
    (float (System.IO.FileInfo first.Path).Length / 1e6)
    live
    cached
