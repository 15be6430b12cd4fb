using SnnSpec.Datasets;
using SnnSpec.Hardware;
using SnnSpec.Models;
using SnnSpec.Tensors;

namespace SnnSpec.Api.Tests;

/// <summary>Crossbar inference of a whole quantized model and post-training scale calibration from C#.</summary>
public class CrossbarInferenceTests
{
    // MINT neurons with a low threshold, so that the integer layers fire on the synthetic images.
    internal static readonly ZooOptions Tiny = new()
    {
        Width = 0.25f,
        Steps = 3,
        InputSize = 12,
        Neuron = new NeuronOptions { Kind = NeuronKind.Mint, Threshold = 0.25f },
    };

    internal static readonly QuantizationOptions IntegerFour = QuantizationOptions.Uniform(4) with
    {
        UniformMembraneGrid = true,
    };

    private static readonly ImageDataset Train = DataAndEvaluationTests.Synthetic(64, seed: 1);
    private static readonly ImageDataset Test = DataAndEvaluationTests.Synthetic(40, seed: 2);

    private static readonly Lazy<SnnModel> Quantized = new(() =>
        SnnModel.Create(ModelKind.ConvNet, Tiny).Quantize(IntegerFour).CalibrateScales(Train, 64)
    );

    private static CrossbarInferenceOptions Calibrated(double coverage, int images = 512) =>
        new()
        {
            AdcBits = 4,
            AdcCoverage = coverage,
            CalibrationData = Train,
            CalibrationImages = images,
        };

    [Test]
    public void IdealCrossbarsReproduceTheIntegerPath()
    {
        var m = Quantized.Value;
        var r = CrossbarSimulator.EvaluateOnCrossbars(m, Test, batchSize: 16);
        Assert.Multiple(() =>
        {
            Assert.That(r.Samples, Is.EqualTo(Test.Count));
            Assert.That(r.CrossbarLayers, Is.Not.Empty);
            Assert.That(r.CrossbarAccuracy, Is.EqualTo(r.IntegerAccuracy));
            Assert.That(r.FloatAccuracy, Is.EqualTo(Evaluator.Evaluate(m, Test).Final));
            Assert.That(r.FullScales, Is.Empty);
        });
    }

    [Test]
    public void CalibratedFullScalesGrowWithCoverageAndUseOnlyTheFirstImages()
    {
        var m = Quantized.Value;
        var low = CrossbarSimulator.EvaluateOnCrossbars(m, Test, Calibrated(0.5));
        var high = CrossbarSimulator.EvaluateOnCrossbars(m, Test, Calibrated(1.0));
        Assert.That(
            high.FullScales,
            Is.Not.Empty,
            "no integer layer fired on the calibration images"
        );
        foreach (var (layer, scale) in high.FullScales)
        {
            Assert.That(high.CrossbarLayers, Does.Contain(layer));
            Assert.That(scale, Is.GreaterThanOrEqualTo(1.0));
            Assert.That(scale, Is.EqualTo(Math.Round(scale)), $"{layer}: a whole number of levels");
            Assert.That(low.FullScales[layer], Is.LessThanOrEqualTo(scale), layer);
        }

        // CalibrationImages = 20 reads exactly the first 20 images, also when batches hold 16.
        var first = CrossbarSimulator.EvaluateOnCrossbars(
            m,
            Test,
            Calibrated(1.0, images: 20),
            batchSize: 16
        );
        var taken = CrossbarSimulator.EvaluateOnCrossbars(
            m,
            Test,
            Calibrated(1.0) with
            {
                CalibrationData = Train.Take(20),
            }
        );
        Assert.That(first.FullScales, Is.EqualTo(taken.FullScales));
        Assert.That(first.CrossbarAccuracy, Is.EqualTo(taken.CrossbarAccuracy));
    }

    [Test]
    public async Task VariationIsDeterministicForASeed()
    {
        var m = Quantized.Value;
        var noisy = new CrossbarInferenceOptions
        {
            AdcBits = 6,
            VariationSigma = 0.2,
            VariationSeed = 5,
        };
        var a = CrossbarSimulator.EvaluateOnCrossbars(m, Test, noisy);
        var b = await CrossbarSimulator.EvaluateOnCrossbarsAsync(m, Test, noisy);
        Assert.That(b, Is.EqualTo(a).Using<CrossbarInferenceResult>(SameAccuracies));
    }

    [Test]
    public void SeveralDatapathsInOnePassEqualOneCallEach()
    {
        var m = Quantized.Value;
        CrossbarInferenceOptions Chip(int seed) =>
            new()
            {
                AdcBits = 4,
                VariationSigma = 0.5,
                VariationSeed = seed,
            };
        // The last option shares the calibration of the second (variation does not enter it).
        var options = new[]
        {
            CrossbarInferenceOptions.Ideal,
            Calibrated(0.9),
            Chip(1),
            Chip(2),
            Calibrated(0.9) with
            {
                VariationSigma = 0.5,
                VariationSeed = 3,
            },
        };
        var together = CrossbarSimulator.EvaluateOnCrossbars(m, Test, options, batchSize: 16);
        Assert.That(together, Has.Count.EqualTo(options.Length));
        for (int i = 0; i < options.Length; i++)
        {
            var alone = CrossbarSimulator.EvaluateOnCrossbars(m, Test, options[i], batchSize: 16);
            Assert.That(
                together[i],
                Is.EqualTo(alone).Using<CrossbarInferenceResult>(SameAccuracies),
                $"options {i}"
            );
            Assert.That(together[i].FullScales, Is.EqualTo(alone.FullScales), $"options {i}");
        }
        Assert.Throws<ArgumentException>(() =>
            CrossbarSimulator.EvaluateOnCrossbars(m, Test, Array.Empty<CrossbarInferenceOptions>())
        );
    }

    private static bool SameAccuracies(CrossbarInferenceResult x, CrossbarInferenceResult y) =>
        x.CrossbarAccuracy == y.CrossbarAccuracy
        && x.IntegerAccuracy == y.IntegerAccuracy
        && x.Samples == y.Samples;

    [Test]
    public void FitScalesBringsAPostTrainingModelCloserToItsFloatTwin()
    {
        var q = SnnModel
            .Create(ModelKind.ConvNet, Tiny)
            .Quantize(QuantizationOptions.Uniform(8))
            .CalibrateScales(Train, 32);
        var start = q.CompareWithFloat(Train, 32);
        var fitted = q.FitScales(Train, 32, candidates: 8);
        var after = fitted.CompareWithFloat(Train, 32);
        Assert.That(after.Error, Is.LessThanOrEqualTo(start.Error));
        Assert.That(
            after.Populations.Select(p => p.Name),
            Is.EqualTo(start.Populations.Select(p => p.Name))
        );
        foreach (var p in after.Populations)
        {
            Assert.That(p.SpikeAgreement, Has.Count.EqualTo(Tiny.Steps));
            Assert.That(p.SpikeAgreement, Has.All.InRange(0.0, 1.0));
            Assert.That(p.MembraneError, Has.All.GreaterThanOrEqualTo(0.0));
        }
        Assert.That(after.PredictionAgreement, Has.All.InRange(0.0, 1.0));
        Assert.That(after.ToString(), Does.Contain("spikes agree"));
        // A full-precision model has no quantized twin to compare.
        var fp = SnnModel.Create(ModelKind.ConvNet, Tiny);
        Assert.That(
            Assert.Throws<ArgumentException>(() => fp.CompareWithFloat(Train))!.Message,
            Does.Contain("Quantize")
        );
        Assert.Throws<ArgumentOutOfRangeException>(() => q.FitScales(Train, candidates: 0));
    }

    [Test]
    public void ExportIntegerWritesAFileThatLoadsBackAsTheSameModel()
    {
        var path = Path.Combine(
            Path.GetTempPath(),
            $"snnspec-{Guid.NewGuid():N}",
            "q.int.safetensors"
        );
        Quantized.Value.ExportInteger(path);
        var back = SnnModel.Load(path);
        Assert.That(back.IsQuantized);
        foreach (var n in Quantized.Value.ParameterNames)
        {
            Assert.That(
                back.GetParameter(n).ToArray(),
                Is.EqualTo(Quantized.Value.GetParameter(n).ToArray()),
                n
            );
        }
        var (_, integer) = SnnSpec.IO.IntegerExportFile.read(path).ToValueTuple();
        Assert.That(integer.Layers, Is.Not.Empty);
        var fp = SnnModel.Create(ModelKind.ConvNet, Tiny);
        Assert.That(
            Assert.Throws<InvalidOperationException>(() => fp.ExportInteger(path))!.Message,
            Does.Contain("Quantize")
        );
    }

    [Test]
    public void ForwardIntegerReproducesTheFakeQuantizedSpikesWithUniformMembranes()
    {
        var m = Quantized.Value;
        var x = Test.ToTensor(Enumerable.Range(0, 8));
        var probes = new ForwardOptions { Spikes = m.SpikingLayerNames };
        var integer = m.ForwardInteger(x, probes);
        var reference = m.Forward(x, probes);
        Assert.That(integer.IntegerLayers, Is.Not.Empty);
        Assert.That(reference.IntegerLayers, Is.Empty);
        foreach (var n in m.SpikingLayerNames)
        {
            Assert.That(integer.Spikes[n].ToArray(), Is.EqualTo(reference.Spikes[n].ToArray()), n);
        }
        Assert.That(
            m.SpikingLayerNames.Any(n => integer.Spikes[n].ToArray().Any(v => v != 0f)),
            "every population is silent, so equal spikes would say nothing"
        );
        Assert.That(integer.Predictions(), Is.EqualTo(reference.Predictions()));
        Assert.That(m.IntegerAgreement(x), Is.EqualTo(1.0));
    }

    [Test]
    public void AnIntegerStreamInChunksGivesOneIntegerRunsSpikes()
    {
        var m = Quantized.Value;
        var x = Test.ToTensor(Enumerable.Range(0, 4)).ToArray();
        // Three frames that differ: the static batch scaled by 0.6, 0.9 and 1.2.
        var frames = Enumerable
            .Range(0, m.Steps)
            .SelectMany(t => x.Select(v => v * (0.6f + 0.3f * t)))
            .ToArray();
        var sequence = TensorOps.FromArray(
            frames,
            new[] { m.Steps, 4 }.Concat(m.InputShape).ToArray()
        );
        var probes = new ForwardOptions { Spikes = m.SpikingLayerNames };
        var whole = m.ForwardInteger(sequence, probes);
        var stream = m.OpenIntegerStream();
        Assert.That(stream.IsInteger);
        Assert.That(m.OpenStream().IsInteger, Is.False);
        var first = stream.Step(TensorOps.Narrow(sequence, 0, 0, 2), probes);
        var second = stream.Step(TensorOps.Narrow(sequence, 0, 2, m.Steps - 2), probes);
        Assert.That(stream.StepsSeen, Is.EqualTo(m.Steps));
        Assert.That(first.IntegerLayers, Is.EqualTo(whole.IntegerLayers));
        foreach (var n in m.SpikingLayerNames)
        {
            Assert.That(
                first.Spikes[n].ToArray().Concat(second.Spikes[n].ToArray()).ToArray(),
                Is.EqualTo(whole.Spikes[n].ToArray()),
                n
            );
        }
        Assert.That(
            first.Logits.ToArray().Concat(second.Logits.ToArray()).ToArray(),
            Is.EqualTo(whole.Logits.ToArray()).Within(1e-5f)
        );
        // From rest, the second chunk differs: the carried integer membranes mattered.
        var fromRest = m.OpenIntegerStream()
            .Step(TensorOps.Narrow(sequence, 0, 2, m.Steps - 2), probes);
        Assert.That(
            m.SpikingLayerNames.Any(n =>
                !fromRest.Spikes[n].ToArray().SequenceEqual(second.Spikes[n].ToArray())
            ),
            "the carried integer state changed nothing"
        );
    }

    [Test]
    public void AStreamReportsTheLayersThatRanInIntegersInEachChunk()
    {
        // The first conv quantized too: it is exported as a pair but reads analog pixels, so it runs in float.
        var m = SnnModel
            .Create(ModelKind.ConvNet, Tiny)
            .Quantize(IntegerFour with { KeepFirstLayerFullPrecision = false })
            .CalibrateScales(Train, 64);
        var x = Test.ToTensor(Enumerable.Range(0, 4));
        var whole = m.ForwardInteger(x);
        Assert.That(whole.IntegerLayers, Is.Not.Empty);
        Assert.That(whole.IntegerLayers, Does.Not.Contain("conv1"));
        var frames = x.ToArray();
        var sequence = TensorOps.FromArray(
            Enumerable.Range(0, m.Steps).SelectMany(_ => frames).ToArray(),
            new[] { m.Steps, 4 }.Concat(m.InputShape).ToArray()
        );
        var stream = m.OpenIntegerStream();
        for (int t = 0; t < m.Steps; t++)
        {
            var chunk = stream.Step(TensorOps.Narrow(sequence, 0, t, 1));
            Assert.That(chunk.IntegerLayers, Is.EqualTo(whole.IntegerLayers), $"step {t}");
        }
    }

    [Test]
    public void IntegerRunsNameWhatTheyNeed()
    {
        var fp = SnnModel.Create(ModelKind.ConvNet, Tiny);
        var x = Test.ToTensor(Enumerable.Range(0, 2));
        Assert.Multiple(() =>
        {
            Assert.That(
                Assert.Throws<InvalidOperationException>(() => fp.ForwardInteger(x))!.Message,
                Does.Contain("Quantize").And.Contain("ForwardInteger")
            );
            Assert.That(
                Assert.Throws<InvalidOperationException>(() => fp.IntegerAgreement(x))!.Message,
                Does.Contain("Quantize")
            );
            Assert.That(
                Assert.Throws<InvalidOperationException>(() => fp.OpenIntegerStream())!.Message,
                Does.Contain("OpenIntegerStream")
            );
            Assert.That(
                Assert
                    .Throws<ArgumentException>(() =>
                        Quantized.Value.ForwardInteger(x, new ForwardOptions { Training = true })
                    )!
                    .Message,
                Does.Contain("evaluation mode")
            );
            Assert.Throws<InvalidOperationException>(() =>
                Quantized.Value.AsAnn().OpenIntegerStream()
            );
            Assert.That(
                Assert
                    .Throws<InvalidOperationException>(() =>
                        Quantized.Value.AsAnn().ForwardInteger(x)
                    )!
                    .Message,
                Does.Contain("ANN twin")
            );
            Assert.Throws<InvalidOperationException>(() =>
                Quantized.Value.AsAnn().IntegerAgreement(x)
            );
        });
    }

    [Test]
    public void CalibrateScalesSetsTheScalesFromTheData()
    {
        var q = SnnModel.Create(ModelKind.ConvNet, Tiny).Quantize(IntegerFour);
        var c = q.CalibrateScales(Train, 32);
        var alphas = q.ParameterNames.Where(n => n.EndsWith(".alpha")).ToArray();
        Assert.That(alphas, Is.Not.Empty);
        Assert.That(
            alphas.Any(n =>
                !c.GetParameter(n).ToArray().SequenceEqual(q.GetParameter(n).ToArray())
            ),
            Is.True,
            "calibration changed no scale"
        );
        // The same samples give the same scales.
        var again = q.CalibrateScales(Train.Take(32));
        foreach (var n in alphas)
        {
            Assert.That(
                again.GetParameter(n).ToArray(),
                Is.EqualTo(c.GetParameter(n).ToArray()),
                n
            );
        }
    }

    [Test]
    public void BadInputIsRefusedWithTheFix()
    {
        var m = Quantized.Value;
        var fp = SnnModel.Create(ModelKind.ConvNet, Tiny);
        Assert.Multiple(() =>
        {
            Assert.That(
                Assert
                    .Throws<ArgumentException>(() =>
                        CrossbarSimulator.EvaluateOnCrossbars(fp, Test)
                    )!
                    .Message,
                Does.Contain("Quantize")
            );
            Assert.That(
                Assert
                    .Throws<ArgumentException>(() =>
                        CrossbarSimulator.EvaluateOnCrossbars(
                            m,
                            Test,
                            new CrossbarInferenceOptions
                            {
                                AdcCoverage = 0.99,
                                CalibrationData = Train,
                            }
                        )
                    )!
                    .Message,
                Does.Contain("AdcBits")
            );
            Assert.Throws<ArgumentOutOfRangeException>(() =>
                CrossbarSimulator.EvaluateOnCrossbars(m, Test, Calibrated(1.5))
            );
            Assert.That(
                Assert
                    .Throws<ArgumentException>(() =>
                        CrossbarSimulator.EvaluateOnCrossbars(
                            m,
                            Test,
                            Calibrated(0.99) with
                            {
                                CalibrationData = null,
                            }
                        )
                    )!
                    .Message,
                Does.Contain("training images")
            );
            Assert.That(
                Assert
                    .Throws<ArgumentException>(() =>
                        CrossbarSimulator.EvaluateOnCrossbars(
                            m,
                            DataAndEvaluationTests.Synthetic(8, size: 10)
                        )
                    )!
                    .ParamName,
                Is.EqualTo("data")
            );
            Assert.That(
                Assert.Throws<ArgumentException>(() => fp.CalibrateScales(Train))!.Message,
                Does.Contain("Quantize")
            );
            using var cancelled = new CancellationTokenSource();
            cancelled.Cancel();
            Assert.That(
                () =>
                    CrossbarSimulator.EvaluateOnCrossbars(
                        m,
                        Test,
                        cancellationToken: cancelled.Token
                    ),
                Throws.InstanceOf<OperationCanceledException>()
            );
        });
    }
}
