// SnnSpec from C#: build a spiking VGG-9 teacher and a 4-bit student, run a forward pass, evaluate
// accuracy at every timestep on a synthetic batch, stream a sequence chunk by chunk, run a quantized
// student in integer arithmetic, and cost both on SpikeSim's crossbar chip.
using SnnSpec.Datasets;
using SnnSpec.Hardware;
using SnnSpec.Models;
using SnnSpec.Tensors;

var options = ZooOptions.Cifar10 with { Steps = 4, Width = 0.5f };
var model = SnnModel.Create(ModelKind.Vgg9, options);
Console.WriteLine(model);

// Forward: per-step logits [T, B, K] for a batch of two random images.
var input = TensorOps.Rand(seed: 1, 2, 3, 32, 32);
var result = model.Forward(input, new ForwardOptions { FiringRates = true });
Console.WriteLine($"logits shape [{string.Join(", ", result.Logits.Shape)}]");
Console.WriteLine($"predictions: {string.Join(", ", result.Predictions())}");

// Full-range evaluation on a tiny synthetic set: accuracy at every t = 1…T.
var pixels = new byte[8 * 3 * 32 * 32];
new Random(0).NextBytes(pixels);
var data = ImageDataset.FromPixels(
    "noise",
    pixels,
    Enumerable.Range(0, 8).Select(i => i % 10).ToArray(),
    3,
    32,
    32,
    10
);
Console.WriteLine($"accuracy per step: {Evaluator.Evaluate(model, data, batchSize: 4)}");

// Streaming: a sequence of 8 frames fed 2 at a time; the neurons carry their membranes between
// chunks, so the last chunk's logits are those of one run over all 8 frames.
var frames = TensorOps.Rand(seed: 2, 8, 2, 3, 32, 32);
var stream = model.OpenStream();
ForwardResult? last = null;
for (int start = 0; start < 8; start += 2)
{
    last = stream.Step(TensorOps.Narrow(frames, 0, start, 2));
}
var oneRun = model.WithSteps(8).Forward(frames).LogitsPerStep();
var streamed = last!.LogitsPerStep();
float gap = Enumerable.Range(0, 10).Max(k => Math.Abs(streamed[1, 0, k] - oneRun[7, 0, k]));
Console.WriteLine(
    $"streamed {stream.StepsSeen} steps; last step vs one run: max |Δ logit| = {gap:G3}"
);

// Integer inference: a 4-bit ConvNet student with MINT neurons and uniform membranes runs its
// (weight → neuron) pairs in integer arithmetic, spike for spike as its fake-quantized float model.
var student = SnnModel
    .Create(
        ModelKind.ConvNet,
        options with
        {
            Neuron = new NeuronOptions { Kind = NeuronKind.Mint, Threshold = 0.25f },
        }
    )
    .Quantize(QuantizationOptions.Uniform(4) with { UniformMembraneGrid = true })
    .CalibrateScales(data, samples: 8);
var integer = student.ForwardInteger(input);
Console.WriteLine(
    $"integer layers: {string.Join(", ", integer.IntegerLayers)}; "
        + $"spikes equal to the float model's: {student.IntegerAgreement(input):P1}"
);

// Crossbar cost: the FP32 model against its 4-bit deployment on the same chip.
var sim = new CrossbarSimulator(AcceleratorOptions.SpikeSim);
var fp32 = sim.Estimate(model, QuantizationOptions.FullPrecision);
var q4 = sim.Estimate(model, QuantizationOptions.Uniform(4), firingRates: result.FiringRates);
Console.WriteLine(fp32);
Console.WriteLine(q4);
Console.WriteLine(CrossbarSimulator.Compare(fp32, q4).Summary());
