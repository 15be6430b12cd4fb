using SnnSpec.Datasets;
using SnnSpec.Hardware;
using SnnSpec.KnowledgeDistillation;
using SnnSpec.Learning;
using SnnSpec.Models;
using SnnSpec.Tensors;

namespace SnnSpec.Api.Tests;

public class ModelTests
{
    private static readonly ZooOptions Small = new()
    {
        Width = 0.25f,
        Steps = 3,
        InputSize = 12,
        Seed = 1,
    };

    [Test]
    public void ConvNetBuildsRunsAndSummarises()
    {
        var m = SnnModel.Create(ModelKind.ConvNet, Small);
        Assert.Multiple(() =>
        {
            Assert.That(m.Steps, Is.EqualTo(3));
            Assert.That(m.IsAnn, Is.False);
            Assert.That(m.InputShape, Is.EqualTo(new[] { 1, 12, 12 }));
            Assert.That(m.Classes, Is.EqualTo(10));
            Assert.That(m.ParameterCount, Is.GreaterThan(0));
            Assert.That(m.ParameterNames, Does.Contain("conv1.weight"));
            Assert.That(m.GetParameter("fc.bias").Shape, Is.EqualTo(new[] { 10 }));
            Assert.That(m.Summary(), Does.Contain("total parameters"));
            Assert.That(m.SpikingLayerNames, Does.Contain("lif1"));
        });
        var x = TensorOps.Rand(2, 5, 1, 12, 12);
        var r = m.Forward(
            x,
            new ForwardOptions
            {
                Membranes = new[] { "lif1" },
                Taps = new[] { "feature" },
                FiringRates = true,
            }
        );
        Assert.Multiple(() =>
        {
            Assert.That(r.Logits.Shape, Is.EqualTo(new[] { 3, 5, 10 }));
            Assert.That(r.LogitsPerStep().GetLength(0), Is.EqualTo(3));
            Assert.That(r.Membranes["lif1"].Shape[0], Is.EqualTo(3));
            Assert.That(r.Taps.ContainsKey("feature"));
            Assert.That(r.FiringRates, Is.Not.Empty);
            Assert.That(r.Predictions(), Has.Length.EqualTo(5));
        });
        var arr = m.Forward(x.ToArray(), 5);
        Assert.That(arr[2, 4, 9], Is.EqualTo(r.Logits[new[] { 2, 4, 9 }]));
        Assert.That(m.WithSteps(2).Forward(x).Logits.Shape[0], Is.EqualTo(2));
        Assert.That(m.AsAnn().Forward(x).Logits.Shape, Is.EqualTo(new[] { 1, 5, 10 }));
    }

    [Test]
    public void SameSeedSameModelAndEveryKindBuilds()
    {
        var a = SnnModel.Create(ModelKind.Mlp, Small with { Hidden = new[] { 32 } });
        var b = SnnModel.Create(ModelKind.Mlp, Small with { Hidden = new[] { 32 } });
        Assert.That(a.GetParameter("fc1.weight"), Is.EqualTo(b.GetParameter("fc1.weight")));
        foreach (var kind in Enum.GetValues<ModelKind>())
        {
            var m = SnnModel.Create(kind, Small with { InputSize = 16, Width = 0.125f });
            Assert.That(m.ParameterCount, Is.GreaterThan(0), kind.ToString());
        }
    }

    [Test]
    public void BadOptionsSayWhatIsWrongAndWhatIsAllowed()
    {
        var e1 = Assert.Throws<ArgumentOutOfRangeException>(() =>
            SnnModel.Create(ModelKind.ConvNet, new ZooOptions { Width = 0f })
        )!;
        Assert.That(e1.Message, Does.Contain("Width").And.Contain("> 0"));
        var e2 = Assert.Throws<ArgumentOutOfRangeException>(() =>
            SnnModel.Create(ModelKind.Vgg11, new ZooOptions { InputSize = 8 })
        )!;
        Assert.That(e2.Message, Does.Contain("at least 16"));
        var e3 = Assert.Throws<ArgumentException>(() =>
            SnnModel.Create(
                ModelKind.ConvNet,
                new ZooOptions
                {
                    Neuron = new NeuronOptions { Kind = NeuronKind.If, Tau = 2f },
                }
            )
        )!;
        Assert.That(e3.Message, Does.Contain("Tau applies only to NeuronKind.Lif"));
        var m = SnnModel.Create(ModelKind.ConvNet, Small);
        var e4 = Assert.Throws<ArgumentException>(() => m.Forward(TensorOps.Zeros(2, 3, 12, 12)))!;
        Assert.That(e4.Message, Does.Contain("[2, 3, 12, 12]").And.Contain("[B, 1, 12, 12]"));
        var e5 = Assert.Throws<ArgumentException>(() => m.GetParameter("nope"))!;
        Assert.That(e5.Message, Does.Contain("conv1.weight"));
        Assert.Throws<ArgumentOutOfRangeException>(() => m.WithSteps(0));
        var e6 = Assert.Throws<ArgumentException>(() => TensorOps.FromArray(new float[5], 2, 3))!;
        Assert.That(e6.Message, Does.Contain("5 elements").And.Contain("needs 6"));
    }

    [Test]
    public void QuantizedWeightsLieOnTheGrid()
    {
        var m = SnnModel.Create(ModelKind.ConvNet, Small);
        var q = m.QuantizeWeights(QuantizationOptions.Uniform(2));
        var levels = q.GetParameter("conv1.weight").ToArray().Distinct().Count();
        Assert.That(levels, Is.LessThanOrEqualTo(3));
        Assert.That(q.GetParameter("bn1.weight"), Is.EqualTo(m.GetParameter("bn1.weight")));
        Assert.Throws<ArgumentOutOfRangeException>(() => QuantizationOptions.Uniform(0));
    }
}

public class DataAndEvaluationTests
{
    internal static ImageDataset Synthetic(int n, int size = 12, int seed = 0)
    {
        var rng = new Random(seed);
        var labels = Enumerable.Range(0, n).Select(i => i % 10).ToArray();
        var pixels = new byte[n * size * size];
        for (int i = 0; i < n; i++)
        {
            // A bright column at a position given by the class, plus noise.
            for (int r = 0; r < size; r++)
            {
                for (int c = 0; c < size; c++)
                {
                    pixels[i * size * size + r * size + c] = (byte)(
                        c == labels[i] ? 255 : rng.Next(0, 40)
                    );
                }
            }
        }
        return ImageDataset.FromPixels("synthetic", pixels, labels, 1, size, size, 10);
    }

    [Test]
    public void SyntheticSetBatchesAndEvaluatesAtEveryStep()
    {
        var data = Synthetic(50);
        Assert.That(data.Count, Is.EqualTo(50));
        var loader = data.Batches(new BatchingOptions { BatchSize = 16, Prefetch = 0 });
        Assert.That(loader.BatchesPerEpoch, Is.EqualTo(4));
        var first = loader.Epoch(0).First();
        Assert.That(first.Inputs.Shape, Is.EqualTo(new[] { 16, 1, 12, 12 }));
        Assert.That(first.Inputs.ToArray().Max(), Is.LessThanOrEqualTo(1f));

        var m = SnnModel.Create(
            ModelKind.ConvNet,
            new ZooOptions
            {
                Width = 0.25f,
                Steps = 3,
                InputSize = 12,
            }
        );
        var acc = Evaluator.Evaluate(m, data, batchSize: 20);
        Assert.Multiple(() =>
        {
            Assert.That(acc.Total, Is.EqualTo(50));
            Assert.That(acc.Accuracy, Has.Count.EqualTo(3));
            Assert.That(acc.Accuracy.All(a => a >= 0 && a <= 1));
            Assert.That(acc.Final, Is.EqualTo(acc.Accuracy[2]));
        });
        var logits = m.Forward(data.ToTensor(Enumerable.Range(0, 10))).Logits;
        Assert.That(
            Evaluator.CorrectPerStep(logits, data.Labels.Take(10).ToArray()),
            Has.Length.EqualTo(3)
        );
        var e = Assert.Throws<ArgumentException>(() =>
            Evaluator.CorrectPerStep(logits, new[] { 1, 2 })
        )!;
        Assert.That(e.Message, Does.Contain("one label per sample"));
        Assert.Throws<ArgumentOutOfRangeException>(() => data.Subset(new[] { 50 }));
        Assert.Throws<ArgumentException>(() =>
            ImageDataset.FromPixels("x", new byte[3], new[] { 0 }, 1, 2, 2, 10)
        );
    }

    [Test]
    public void OfflineFetchOfAMissingSetNamesTheAttempts()
    {
        var dir = Directory.CreateTempSubdirectory("snnspec-fetch");
        try
        {
            var e = Assert.Catch<Exception>(() =>
                DatasetCatalog.LoadFashionMnist(
                    false,
                    FetchSettings.Offline with
                    {
                        CacheDirectory = dir.FullName,
                        UseSystemDirectories = false,
                    }
                )
            )!;
            Assert.That(e.Message, Does.Contain("Tried"));
        }
        finally
        {
            dir.Delete(true);
        }
    }
}

public class DistillationTests
{
    private static (SnnModel Teacher, SnnModel Student) Pair()
    {
        var o = new ZooOptions
        {
            Width = 0.25f,
            Steps = 2,
            InputSize = 12,
        };
        return (
            SnnModel.Create(ModelKind.ConvNet, o),
            SnnModel.Create(ModelKind.ConvNet, o with { Seed = 3 })
        );
    }

    [Test]
    public void BuilderProducesTermsAndProbes()
    {
        var (t, s) = Pair();
        var spec = new DistillationSpecBuilder()
            .Teacher(t)
            .Student(s)
            .AddCrossEntropy(0.5f)
            .AddTemporalKd(alpha: 0.2f, beta: 0.5f, tau: 3f)
            .AddMembraneKd(weight: 0.1f)
            .AddLogitKd(4f, 1f)
            .AddCustom(
                "mean-gap",
                2f,
                (teacher, student, labels) =>
                    TensorOps.Mse(
                        TensorOps.MeanOver(student.Logits, false, 0),
                        TensorOps.MeanOver(teacher.Logits, false, 0)
                    )
            )
            .Build();
        Assert.That(
            spec.Terms.Select(x => x.Name),
            Is.EqualTo(new[] { "ce", "temporal", "membrane", "kd", "mean-gap" })
        );
        Assert.That(spec.TeacherProbes.Membranes, Is.EquivalentTo(s.SpikingLayerNames));
        Assert.That(spec.StudentProbes.Membranes, Is.EquivalentTo(s.SpikingLayerNames));

        var x = TensorOps.Rand(5, 4, 1, 12, 12);
        var labels = new[] { 0, 1, 2, 3 };
        var loss = spec.Evaluate(
            t.Forward(x, spec.TeacherProbes),
            s.Forward(x, spec.StudentProbes),
            labels
        );
        Assert.That(loss.Terms, Has.Count.EqualTo(5));
        Assert.That(loss.Total, Is.EqualTo(loss.Terms.Sum(p => p.Value)).Within(1e-3));
        Assert.That(loss.Terms.All(p => p.Value >= 0 && float.IsFinite(p.Value)));
        Assert.That(loss.Terms.First(p => p.Key == "mean-gap").Value, Is.GreaterThan(0));
    }

    [Test]
    public void SpikeCountCrossEntropyReadsTheTimeSum()
    {
        var (_, s) = Pair();
        var x = TensorOps.Rand(6, 2, 1, 12, 12);
        var labels = new[] { 3, 7 };
        var output = s.Forward(x, new ForwardOptions());
        float Ce(OutputReadout r) =>
            new DistillationSpecBuilder()
                .Student(s)
                .AddCrossEntropy(readout: r)
                .Build()
                .Evaluate(null, output, labels)
                .Total;

        var bySum = TensorOps
            .CrossEntropy(TensorOps.SumOver(output.Logits, false, 0), labels)
            .ToScalar();
        var byMean = TensorOps
            .CrossEntropy(TensorOps.MeanOver(output.Logits, false, 0), labels)
            .ToScalar();
        Assert.That(Ce(OutputReadout.SpikeCount), Is.EqualTo(bySum).Within(1e-5));
        Assert.That(Ce(OutputReadout.Mean), Is.EqualTo(byMean).Within(1e-5));
        Assert.That(bySum, Is.Not.EqualTo(byMean).Within(1e-6));
    }

    [Test]
    public void BuilderRejectsWhatCannotWork()
    {
        var (t, s) = Pair();
        var e1 = Assert.Throws<InvalidOperationException>(() =>
            new DistillationSpecBuilder().Student(s).AddTemporalKd().Build()
        )!;
        Assert.That(e1.Message, Does.Contain("temporal").And.Contain("Teacher(model)"));
        Assert.Throws<InvalidOperationException>(() =>
            new DistillationSpecBuilder().Teacher(t).AddCrossEntropy().Build()
        );
        var e2 = Assert.Throws<ArgumentOutOfRangeException>(() =>
            new DistillationSpecBuilder().AddLogitKd(tau: 0f)
        )!;
        Assert.That(e2.Message, Does.Contain("tau").And.Contain("> 0"));
        Assert.Throws<ArgumentOutOfRangeException>(() =>
            new DistillationSpecBuilder().AddCrossEntropy(weight: -1f)
        );
        var e3 = Assert.Throws<ArgumentException>(() =>
            new DistillationSpecBuilder()
                .Teacher(t)
                .Student(s)
                .AddMembraneKd(new[] { ("lif1", "nope") })
                .Build()
        )!;
        Assert.That(e3.Message, Does.Contain("'nope'").And.Contain("lif1"));
    }

    [Test]
    public async Task TrainerRunsStepsReportsProgressAndStopsOnCancellation()
    {
        var (t, s) = Pair();
        var spec = new DistillationSpecBuilder()
            .Teacher(t)
            .Student(s)
            .AddTemporalKd()
            .AddMembraneKd(0.1f)
            .Build();
        var data = DataAndEvaluationTests.Synthetic(24);
        var reports = new List<TrainingProgress>();
        var progress = new SyncProgress(reports.Add);
        var result = await Trainer.TrainAsync(
            spec,
            data,
            new TrainingOptions { BatchSize = 8, Epochs = 1 },
            progress
        );
        Assert.Multiple(() =>
        {
            Assert.That(result.Steps, Is.EqualTo(3));
            Assert.That(result.Cancelled, Is.False);
            Assert.That(float.IsFinite(result.FinalLoss));
            Assert.That(reports, Has.Count.EqualTo(3));
            Assert.That(reports[0].Terms.Keys, Is.EquivalentTo(new[] { "temporal", "membrane" }));
            Assert.That(
                result.Student.GetParameter("conv1.weight"),
                Is.Not.EqualTo(s.GetParameter("conv1.weight"))
            );
        });

        using var cts = new CancellationTokenSource();
        var stopped = await Trainer.TrainAsync(
            spec,
            data,
            new TrainingOptions { BatchSize = 8, Epochs = 3 },
            new SyncProgress(_ => cts.Cancel()),
            cts.Token
        );
        Assert.That(stopped.Cancelled, Is.True);
        Assert.That(stopped.Steps, Is.EqualTo(1));
    }

    private sealed class SyncProgress(Action<TrainingProgress> action) : IProgress<TrainingProgress>
    {
        public void Report(TrainingProgress value) => action(value);
    }
}

public class HardwareTests
{
    [Test]
    public void Vgg9CostsAndQuantizedStudentWinsOnEveryRatio()
    {
        var teacher = SnnModel.Create(ModelKind.Vgg9, ZooOptions.Cifar10 with { Steps = 4 });
        var sim = new CrossbarSimulator();
        var fp32 = sim.Estimate(teacher, QuantizationOptions.FullPrecision);
        var q4 = sim.Estimate(teacher, QuantizationOptions.Uniform(4));
        Assert.Multiple(() =>
        {
            Assert.That(fp32.Layers, Has.Count.EqualTo(8)); // 7 convs + fc
            Assert.That(fp32.EnergyPicojoules, Is.GreaterThan(q4.EnergyPicojoules));
            Assert.That(
                fp32.EnergyBreakdown.Values.Sum(),
                Is.EqualTo(fp32.EnergyPicojoules).Within(1e-6).Percent
            );
            Assert.That(fp32.Summary(), Does.Contain("EDAP"));
            Assert.That(fp32.Steps, Is.EqualTo(4));
        });
        var c = CrossbarSimulator.Compare(fp32, q4);
        Assert.Multiple(() =>
        {
            Assert.That(c.EnergyRatio, Is.GreaterThan(1));
            Assert.That(c.AreaRatio, Is.GreaterThan(1));
            Assert.That(c.EdapRatio, Is.GreaterThan(1));
            Assert.That(c.TopsPerWattRatio, Is.GreaterThan(1));
            Assert.That(c.EdapRatio, Is.EqualTo(fp32.Edap / q4.Edap).Within(1e-9).Percent);
        });
        var other = sim.Estimate(SnnModel.Create(ModelKind.ConvNet));
        var e = Assert.Throws<ArgumentException>(() => CrossbarSimulator.Compare(fp32, other))!;
        Assert.That(e.Message, Does.Contain("different networks"));
    }

    [Test]
    public void FiringRatesLowerEnergy()
    {
        var m = SnnModel.Create(ModelKind.ConvNet, new ZooOptions { Width = 0.5f });
        var r = m.Forward(
            TensorOps.Rand(1, 2, 1, 28, 28),
            new ForwardOptions { FiringRates = true }
        );
        var sim = new CrossbarSimulator();
        var dense = sim.Estimate(m);
        var sparse = sim.Estimate(m, firingRates: r.FiringRates);
        Assert.That(sparse.EnergyPicojoules, Is.LessThanOrEqualTo(dense.EnergyPicojoules));
        Assert.Throws<ArgumentOutOfRangeException>(() =>
            sim.Estimate(m, firingRates: new Dictionary<string, float> { ["lif1"] = 2f })
        );
    }

    [Test]
    public void IdealCrossbarMatMulIsExact()
    {
        var rng = new Random(3);
        var w = new int[100, 7];
        for (int i = 0; i < 100; i++)
        for (int j = 0; j < 7; j++)
            w[i, j] = rng.Next(-8, 8);
        var x = Enumerable.Range(0, 100).Select(_ => rng.Next(2) == 1).ToArray();
        var y = CrossbarSimulator.MatMul(w, x);
        var exact = CrossbarSimulator.ExactMatMul(w, x);
        Assert.That(y, Is.EqualTo(exact.Select(v => (double)v).ToArray()));
        var noisy = CrossbarSimulator.MatMul(
            w,
            x,
            new CrossbarOptions { AdcBits = 3, VariationSigma = 0.1 }
        );
        Assert.That(noisy, Is.Not.EqualTo(y));
        var e = Assert.Throws<ArgumentOutOfRangeException>(() =>
            CrossbarSimulator.MatMul(
                new[,]
                {
                    { 9 },
                },
                new[] { true }
            )
        )!;
        Assert.That(e.Message, Does.Contain("[-8, 7]"));
        var conv = CrossbarSimulator.Conv2d(new int[2, 1, 3, 3], new bool[1, 5, 5], padding: 1);
        Assert.That(conv.GetLength(1), Is.EqualTo(5));
        Assert.Throws<ArgumentOutOfRangeException>(() =>
            new CrossbarSimulator(new AcceleratorOptions { CrossbarSize = 0 })
        );
    }
}
