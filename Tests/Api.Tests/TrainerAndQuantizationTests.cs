using SnnSpec.KnowledgeDistillation;
using SnnSpec.Learning;
using SnnSpec.Models;
using SnnSpec.Tensors;

namespace SnnSpec.Api.Tests;

public class CoreTrainerTests
{
    private static readonly ZooOptions Small = new()
    {
        Width = 0.25f,
        Steps = 2,
        InputSize = 12,
    };

    private static DistillationSpec Spec(SnnModel? student = null) =>
        new DistillationSpecBuilder()
            .Teacher(SnnModel.Create(ModelKind.ConvNet, Small))
            .Student(student ?? SnnModel.Create(ModelKind.ConvNet, Small with { Seed = 3 }))
            .AddTemporalKd()
            .AddMembraneKd(0.1f)
            .Build();

    [Test]
    public async Task ScheduleClippingAndOptimizerReachTheCoreTrainer()
    {
        var data = DataAndEvaluationTests.Synthetic(32);
        var reports = new List<TrainingProgress>();
        var result = await Trainer.TrainAsync(
            Spec(),
            data,
            new TrainingOptions
            {
                BatchSize = 8,
                Epochs = 2,
                Optimizer = Learning.OptimizerKind.Sgd,
                LearningRate = 0.05f,
                Schedule = LearningRateSchedule.Cosine,
                WeightDecay = 5e-4f,
                ClipNorm = 1f,
            },
            new SyncProgress(reports.Add)
        );
        Assert.Multiple(() =>
        {
            Assert.That(result.Steps, Is.EqualTo(8));
            Assert.That(result.Cancelled, Is.False);
            Assert.That(result.Epoch, Is.EqualTo(1));
            Assert.That(reports.Select(r => r.GlobalStep), Is.EqualTo(Enumerable.Range(1, 8)));
            Assert.That(reports.Select(r => r.Step), Is.EqualTo(new[] { 1, 2, 3, 4, 1, 2, 3, 4 }));
            Assert.That(reports[0].LearningRate, Is.EqualTo(0.05f).Within(1e-6f));
            // Cosine annealing to 0 over 8 steps: strictly decreasing.
            Assert.That(reports.Select(r => r.LearningRate), Is.Ordered.Descending);
            Assert.That(reports[^1].LearningRate, Is.LessThan(0.01f));
            Assert.That(reports.All(r => double.IsFinite(r.GradientNorm) && r.GradientNorm > 0));
        });
    }

    [Test]
    public async Task BlurredKdTrainsOnTheZooFeatureMaps()
    {
        // ConvNet feature maps: 64 · 0.5 = 32 teacher channels, 64 · 0.25 = 16 student channels.
        var spec = new DistillationSpecBuilder()
            .Teacher(SnnModel.Create(ModelKind.ConvNet, Small with { Width = 0.5f }))
            .Student(SnnModel.Create(ModelKind.ConvNet, Small with { Seed = 3 }))
            .AddCrossEntropy()
            .AddBlurredKd(studentChannels: 16, teacherChannels: 32, weight: 1f)
            .Build();
        var reports = new List<TrainingProgress>();
        var result = await Trainer.TrainAsync(
            spec,
            DataAndEvaluationTests.Synthetic(32),
            new TrainingOptions { BatchSize = 8, Epochs = 1 },
            new SyncProgress(reports.Add)
        );
        Assert.Multiple(() =>
        {
            Assert.That(result.Steps, Is.EqualTo(4));
            Assert.That(reports.All(r => r.Terms["bkd"] > 0 && float.IsFinite(r.Terms["bkd"])));
            // The adapter and restoration block come back with the student.
            Assert.That(result.LossParameters.Keys, Is.Not.Empty);
            Assert.That(result.LossParameters.Keys.All(k => k.StartsWith("loss.bkd.")));
            Assert.That(result.LossParameters.Values.All(t => t.ToArray().All(float.IsFinite)));
        });
    }

    [Test]
    public async Task ValidationSelectsTheBestEpochAndStepsPerEpochCanBeCapped()
    {
        var data = DataAndEvaluationTests.Synthetic(40);
        var result = await Trainer.TrainAsync(
            Spec(),
            data,
            new TrainingOptions
            {
                BatchSize = 8,
                Epochs = 2,
                MaxStepsPerEpoch = 2,
                Validation = DataAndEvaluationTests.Synthetic(16, seed: 5),
            }
        );
        Assert.Multiple(() =>
        {
            Assert.That(result.Steps, Is.EqualTo(4));
            Assert.That(result.ValidationAccuracy, Is.Not.Null.And.InRange(0.0, 1.0));
            Assert.That(result.Epoch, Is.InRange(0, 1));
        });
    }

    [Test]
    public async Task CancellationReturnsTheLastCompletedEpoch()
    {
        var student = SnnModel.Create(ModelKind.ConvNet, Small with { Seed = 3 });
        var data = DataAndEvaluationTests.Synthetic(24);
        using var cts = new CancellationTokenSource();
        var stopped = await Trainer.TrainAsync(
            Spec(student),
            data,
            new TrainingOptions { BatchSize = 8, Epochs = 3 },
            new SyncProgress(p =>
            {
                if (p.GlobalStep == 4)
                {
                    cts.Cancel();
                }
            }),
            cts.Token
        );
        Assert.Multiple(() =>
        {
            Assert.That(stopped.Cancelled, Is.True);
            Assert.That(stopped.Steps, Is.EqualTo(4));
            Assert.That(stopped.Epoch, Is.EqualTo(0));
            Assert.That(
                stopped.Student.GetParameter("conv1.weight").ToArray(),
                Is.Not.EqualTo(student.GetParameter("conv1.weight").ToArray())
            );
            Assert.That(float.IsFinite(stopped.FinalLoss));
        });
    }

    [Test]
    public async Task ASnapshotPathResumesACancelledRunToTheSameParameters()
    {
        var data = DataAndEvaluationTests.Synthetic(24);
        var snapshot = Path.Combine(
            Path.GetTempPath(),
            $"snnspec-resume-{Guid.NewGuid():N}.safetensors"
        );
        var options = new TrainingOptions
        {
            BatchSize = 8,
            Epochs = 3,
            SnapshotPath = snapshot,
        };
        var straight = await Trainer.TrainAsync(Spec(), data, options with { SnapshotPath = null });

        using var cts = new CancellationTokenSource();
        var stopped = await Trainer.TrainAsync(
            Spec(),
            data,
            options,
            new SyncProgress(p =>
            {
                if (p.GlobalStep == 5)
                {
                    cts.Cancel();
                }
            }),
            cts.Token
        );
        Assert.That(stopped.Cancelled, Is.True);
        Assert.That(File.Exists(snapshot), Is.True, "the cancelled run leaves its snapshot");

        var resumed = await Trainer.TrainAsync(Spec(), data, options);
        Assert.Multiple(() =>
        {
            Assert.That(resumed.Cancelled, Is.False);
            Assert.That(File.Exists(snapshot), Is.False, "a finished run removes the snapshot");
            foreach (var name in straight.Student.ParameterNames)
            {
                Assert.That(
                    resumed.Student.GetParameter(name).ToArray(),
                    Is.EqualTo(straight.Student.GetParameter(name).ToArray()),
                    name
                );
            }
        });
    }

    [Test]
    public void ANonFiniteLossStopsTraining()
    {
        var spec = new DistillationSpecBuilder()
            .Student(SnnModel.Create(ModelKind.ConvNet, Small))
            .AddCustom(
                "broken",
                1f,
                (_, s, _) => TensorOps.Mean(s.Logits) * float.NaN,
                usesTeacher: false
            )
            .Build();
        var e = Assert.ThrowsAsync<SnnSpec.Training.TrainingDivergedException>(() =>
            Trainer.TrainAsync(
                spec,
                DataAndEvaluationTests.Synthetic(16),
                new TrainingOptions { BatchSize = 8 }
            )
        )!;
        Assert.That(e.Message, Does.Contain("'broken'"));
    }

    [Test]
    public void NewOptionsAreValidated()
    {
        var spec = Spec();
        var data = DataAndEvaluationTests.Synthetic(8);
        Assert.Throws<ArgumentOutOfRangeException>(() =>
            Trainer.TrainAsync(spec, data, new TrainingOptions { ClipNorm = 0f })
        );
        Assert.Throws<ArgumentOutOfRangeException>(() =>
            Trainer.TrainAsync(spec, data, new TrainingOptions { StepGamma = -1f })
        );
        Assert.Throws<ArgumentOutOfRangeException>(() =>
            Trainer.TrainAsync(spec, data, new TrainingOptions { WarmupEpochs = double.NaN })
        );
        var e = Assert.Throws<ArgumentException>(() =>
            Trainer.TrainAsync(
                spec,
                data,
                new TrainingOptions { Validation = DataAndEvaluationTests.Synthetic(4, size: 10) }
            )
        )!;
        Assert.That(e.Message, Does.Contain("options.Validation"));
    }

    private sealed class SyncProgress(Action<TrainingProgress> action) : IProgress<TrainingProgress>
    {
        public void Report(TrainingProgress value) => action(value);
    }
}

public class QuantizationAwareTrainingTests
{
    private static readonly ZooOptions Small = new()
    {
        Width = 0.25f,
        Steps = 2,
        InputSize = 12,
        Seed = 2,
    };

    [Test]
    public void QuantizeAddsLearnableScalesAndAPlan()
    {
        var m = SnnModel.Create(ModelKind.ConvNet, Small);
        var q = m.Quantize(QuantizationOptions.Uniform(4));
        Assert.Multiple(() =>
        {
            Assert.That(m.IsQuantized, Is.False);
            Assert.That(q.IsQuantized, Is.True);
            // MINT's recipe keeps the first (encoding) conv in full precision.
            Assert.That(q.ParameterNames, Does.Not.Contain("conv1.alpha"));
            Assert.That(q.ParameterNames, Does.Contain("conv2.alpha"));
            Assert.That(q.ParameterCount, Is.GreaterThan(m.ParameterCount));
        });
        var all = m.Quantize(
            QuantizationOptions.Uniform(4) with
            {
                KeepFirstLayerFullPrecision = false,
            }
        );
        Assert.That(all.ParameterNames, Does.Contain("conv1.alpha"));
        var logits = q.Forward(TensorOps.Zeros(2, 1, 12, 12)).Logits;
        Assert.That(logits.Shape, Is.EqualTo(new[] { 2, 2, 10 }));
        Assert.That(logits.ToArray().All(float.IsFinite));
    }

    [Test]
    public void FullPrecisionWithoutFoldingComputesTheOriginalModel()
    {
        var m = SnnModel.Create(ModelKind.ConvNet, Small);
        var q = m.Quantize(QuantizationOptions.FullPrecision with { FoldBatchNorm = false });
        var x = TensorOps.FromArray(
            Enumerable.Range(0, 2 * 144).Select(i => (float)((i * 37) % 11) / 11f).ToArray(),
            2,
            1,
            12,
            12
        );
        Assert.That(
            q.Forward(x).Logits.ToArray(),
            Is.EqualTo(m.Forward(x).Logits.ToArray()).Within(1e-5f)
        );
    }

    [Test]
    public async Task AQuantizedStudentTrainsAndKeepsItsPlan()
    {
        var teacher = SnnModel.Create(ModelKind.ConvNet, Small);
        var student = SnnModel
            .Create(ModelKind.ConvNet, Small with { Seed = 4 })
            .Quantize(QuantizationOptions.Uniform(4));
        var spec = new DistillationSpecBuilder()
            .Teacher(teacher)
            .Student(student)
            .AddTemporalKd()
            .Build();
        var result = await Trainer.TrainAsync(
            spec,
            DataAndEvaluationTests.Synthetic(16),
            new TrainingOptions { BatchSize = 8 }
        );
        Assert.Multiple(() =>
        {
            Assert.That(result.Student.IsQuantized, Is.True);
            Assert.That(
                result.Student.GetParameter("conv2.alpha").ToArray(),
                Is.Not.EqualTo(student.GetParameter("conv2.alpha").ToArray())
            );
        });
    }

    [Test]
    public void QuantizeRejectsWhatTheCoreCannotDo()
    {
        var m = SnnModel.Create(ModelKind.ConvNet, Small);
        var q = m.Quantize(QuantizationOptions.Uniform(4));
        var twice = Assert.Throws<ArgumentException>(() =>
            q.Quantize(QuantizationOptions.Uniform(4))
        )!;
        Assert.That(twice.Message, Does.Contain("already quantized"));
        Assert.Throws<ArgumentOutOfRangeException>(() =>
            m.Quantize(new QuantizationOptions { WeightBits = 4, MembraneBits = 20 })
        );
        var unknown = Assert.Throws<ArgumentException>(() =>
            m.Quantize(
                QuantizationOptions.Uniform(4) with
                {
                    FullPrecisionLayers = new[] { "nope" },
                }
            )
        )!;
        Assert.That(unknown.Message, Does.Contain("nope").And.Contain("conv1"));
        // The post-training path is unchanged.
        Assert.That(m.QuantizeWeights(QuantizationOptions.Uniform(2)).IsQuantized, Is.False);
    }
}
