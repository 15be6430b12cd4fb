// Training MACs per sample of MD-SNN's two schemes for the cost runs of docs/results/md-snn-kd-mnist.md
// (Examples/specs/results/mdsnn-versatile.json against mdsnn-pertimestep-t{1..4}.json): an FP32 ConvNet
// teacher and 4-bit ConvNet students at t = 1…4, one epoch each, one teacher forward per batch.
// Prints JSON.
//
//   dotnet build Spec.FSharp -c Release && dotnet fsi Examples/experiments/versatile-cost.fsx
#r "nuget: System.Numerics.Tensors, 10.0.0"
#r "../../Spec.FSharp/bin/Release/net10.0/SnnSpec.Spec.dll"

open SnnSpec
open SnnSpec.Training

let arch = Zoo.convNet ZooConfig.Mnist

let c = VersatileCost.compute TeacherReuse.PerBatch 1 1 arch 4 arch [ 1; 2; 3; 4 ]

printfn """{ "versatileMacs": %d, "perTimestepMacs": %d, "saving": %.4f }""" c.Versatile c.PerTimestep c.Saving
