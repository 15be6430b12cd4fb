using SnnSpec.Datasets;
using SnnSpec.KnowledgeDistillation;
using SnnSpec.Learning;
using SnnSpec.Models;
using SnnSpec.Tensors;

namespace SnnSpec.Api.Tests;

public class EventDataTests
{
    private static string cache = "";

    [OneTimeSetUp]
    public void CreateCache() =>
        cache = Directory.CreateTempSubdirectory("snnspec-api-events-").FullName;

    [OneTimeTearDown]
    public void RemoveCache() => Directory.Delete(cache, true);

    private static EventFrameDataset Events(int n, int frames) =>
        EventFrameDataset.Emulate(DataAndEvaluationTests.Synthetic(n, 28), frames, cache);

    [Test]
    public void EmulatedFramesBatchTimeMajorAndComeBackFromTheCache()
    {
        var images = DataAndEvaluationTests.Synthetic(20, 28);
        var events = Events(20, 3);
        Assert.Multiple(() =>
        {
            Assert.That(events.Name, Is.EqualTo("event-synthetic"));
            Assert.That(events.SampleShape, Is.EqualTo(new[] { 3, 2, 34, 34 }));
            Assert.That(events.Frames, Is.EqualTo(3));
            Assert.That(events.StepShape, Is.EqualTo(new[] { 2, 34, 34 }));
            Assert.That(events.Labels, Is.EqualTo(images.Labels));
            Assert.That(events.Classes, Is.EqualTo(10));
            Assert.That(images.Frames, Is.EqualTo(0));
        });
        var batch = events
            .Batches(
                new BatchingOptions
                {
                    BatchSize = 8,
                    Shuffle = false,
                    Prefetch = 0,
                }
            )
            .Epoch(0)
            .First();
        Assert.That(batch.Inputs.Shape, Is.EqualTo(new[] { 3, 8, 2, 34, 34 }));
        var direct = events.ToTensor(Enumerable.Range(0, 8)).ToArray();
        Assert.That(batch.Inputs.ToArray(), Is.EqualTo(direct));
        Assert.That(direct.Sum(), Is.GreaterThan(0f), "the saccades produce events");
        Assert.That(Directory.GetFiles(cache), Is.Not.Empty);
        Assert.That(Events(20, 3).ToTensor(Enumerable.Range(0, 8)).ToArray(), Is.EqualTo(direct));
        var tail = events.Take(30).Subset(new[] { 19, 0 });
        Assert.That(tail.Labels, Is.EqualTo(new[] { images.Labels[19], images.Labels[0] }));
        Assert.Throws<ArgumentOutOfRangeException>(() => events.Subset(new[] { 20 }));
    }

    [Test]
    public async Task AStackedFrameAnnTeachesAnSnnThatReadsOneFramePerStep()
    {
        var events = Events(24, 3);
        var zoo = ZooOptions.For(events) with { Width = 0.25f };
        Assert.That(
            (zoo.InputChannels, zoo.InputSize, zoo.Steps, zoo.Classes),
            Is.EqualTo((2, 34, 3, 10))
        );
        var teacher = SnnModel.Create(ModelKind.ConvNet, zoo with { Ann = true, StackFrames = 3 });
        Assert.That(teacher.StackedFrames, Is.EqualTo(3));
        Assert.That(teacher.InputShape, Is.EqualTo(new[] { 2, 34, 34 }));
        var student = SnnModel.Create(ModelKind.ConvNet, zoo with { Seed = 1 });
        Assert.That(student.StackedFrames, Is.Null);
        var spec = new DistillationSpecBuilder()
            .Teacher(teacher)
            .Student(student)
            .AddCrossEntropy()
            .AddLogitKd()
            .Build();
        var result = await Trainer.TrainAsync(
            spec,
            events,
            new TrainingOptions
            {
                BatchSize = 8,
                Epochs = 1,
                Validation = events.Take(8),
            }
        );
        Assert.That(result.Steps, Is.EqualTo(3));
        var acc = Evaluator.Evaluate(result.Student, events, batchSize: 10);
        Assert.That(acc.Accuracy, Has.Count.EqualTo(3));
        Assert.That(Evaluator.Evaluate(teacher, events).Accuracy, Has.Count.EqualTo(1));
        // A flat array for a stacked model is time-major [T, B, …]: the same logits as the tensor.
        var two = events.ToTensor(new[] { 0, 1 });
        var flat = teacher.Forward(two.ToArray(), 2);
        var viaTensor = teacher.Forward(two).Logits.ToArray();
        Assert.That(flat.Cast<float>().ToArray(), Is.EqualTo(viaTensor));
    }

    [Test]
    public async Task AStreamRunsFramesInChunksTruncatedTrainingCutsTheSequenceAndCheckpointingChangesNothing()
    {
        var events = Events(16, 4);
        var zoo = ZooOptions.For(events) with { Width = 0.25f };
        var model = SnnModel.Create(ModelKind.ConvNet, zoo);
        var x = events.ToTensor(new[] { 0, 1, 2 });
        var whole = model.Forward(x).Logits.ToArray();
        var stream = model.OpenStream();
        var first = stream.Step(TensorOps.Narrow(x, 0, 0, 3)).Logits.ToArray();
        var second = stream.Step(TensorOps.Narrow(x, 0, 3, 1)).Logits.ToArray();
        Assert.That(stream.StepsSeen, Is.EqualTo(4));
        Assert.That(first.Concat(second).ToArray(), Is.EqualTo(whole).Within(1e-5f));
        var wrongBatch = Assert.Throws<ArgumentException>(() =>
            stream.Step(TensorOps.Narrow(events.ToTensor(new[] { 0, 1 }), 0, 0, 1))
        )!;
        Assert.That(wrongBatch.Message, Does.Contain("carries 3"));
        stream.Reset();
        Assert.That(stream.StepsSeen, Is.EqualTo(0));
        Assert.That(stream.Step(x).Logits.ToArray(), Is.EqualTo(whole).Within(1e-5f));
        Assert.Throws<InvalidOperationException>(() => model.AsAnn().OpenStream());
        var flat = model.OpenStream();
        var x3 = x.ToArray();
        int frameSize = x3.Length / 4;
        var head = flat.Step(x3.Take(3 * frameSize).ToArray(), 3, 3);
        var tail = flat.Step(x3.Skip(3 * frameSize).ToArray(), 1, 3);
        Assert.That(
            head.Cast<float>().Concat(tail.Cast<float>()).ToArray(),
            Is.EqualTo(whole).Within(1e-5f)
        );
        Assert.Throws<ArgumentException>(() => flat.Step(new float[7], 1, 3));

        var spec = new DistillationSpecBuilder().Student(model).AddCrossEntropy().Build();
        var options = new TrainingOptions
        {
            BatchSize = 8,
            Epochs = 1,
            Optimizer = SnnSpec.Learning.OptimizerKind.Sgd,
        };
        var full = await Trainer.TrainAsync(spec, events, options);
        var truncated = await Trainer.TrainAsync(
            spec,
            events,
            options with
            {
                TruncationWindow = 2,
            }
        );
        Assert.That(
            truncated.Student.Forward(x).Logits.ToArray(),
            Is.Not.EqualTo(full.Student.Forward(x).Logits.ToArray())
        );
        Assert.ThrowsAsync<ArgumentOutOfRangeException>(() =>
            Trainer.TrainAsync(spec, events, options with { TruncationWindow = 0 })
        );
        var recomputed = await Trainer.TrainAsync(
            spec,
            events,
            options with
            {
                CheckpointActivations = true,
            }
        );
        Assert.That(
            recomputed.Student.Forward(x).Logits.ToArray(),
            Is.EqualTo(full.Student.Forward(x).Logits.ToArray())
        );
    }

    [Test]
    public void ModelsThatCannotReadTheFramesAreRefusedByName()
    {
        var events = Events(12, 3);
        var zoo = ZooOptions.For(events) with { Width = 0.25f };
        var e = Assert.Throws<ArgumentException>(() =>
            Evaluator.Evaluate(SnnModel.Create(ModelKind.ConvNet, zoo with { Steps = 2 }), events)
        )!;
        Assert.That(e.Message, Does.Contain("one frame per step").And.Contain("WithSteps(3)"));
        e = Assert.Throws<ArgumentException>(() =>
            SnnModel.Create(ModelKind.ConvNet, zoo with { StackFrames = 3 })
        )!;
        Assert.That(e.Message, Does.Contain("StackFrames").And.Contain("Ann = true"));
        var stacked = SnnModel.Create(ModelKind.ConvNet, zoo with { Ann = true, StackFrames = 2 });
        var noTwin = Assert.Throws<InvalidOperationException>(() => stacked.WithSteps(2))!;
        Assert.That(noTwin.Message, Does.Contain("stacks 2 frames").And.Contain("StackFrames = 0"));
        e = Assert.Throws<ArgumentException>(() => Evaluator.Evaluate(stacked, events))!;
        Assert.That(e.Message, Does.Contain("stacks 2"));
        e = Assert.Throws<ArgumentException>(() =>
            Evaluator.Evaluate(stacked, DataAndEvaluationTests.Synthetic(4, 34))
        )!;
        Assert.That(e.Message, Does.Contain("[1, 34, 34]"));
        var oneChannel = SnnModel.Create(
            ModelKind.ConvNet,
            zoo with
            {
                InputChannels = 1,
                Ann = true,
                StackFrames = 3,
            }
        );
        e = Assert.Throws<ArgumentException>(() =>
            Evaluator.Evaluate(oneChannel, DataAndEvaluationTests.Synthetic(4, 34))
        )!;
        Assert.That(e.Message, Does.Contain("holds images").And.Contain("stacks 3"));
        // The trainer names the model that cannot read the frames.
        var spec = new DistillationSpecBuilder()
            .Teacher(stacked)
            .Student(SnnModel.Create(ModelKind.ConvNet, zoo))
            .AddCrossEntropy()
            .AddLogitKd()
            .Build();
        e = Assert.ThrowsAsync<ArgumentException>(() => Trainer.TrainAsync(spec, events))!;
        Assert.That(e.Message, Does.Contain("the teacher").And.Contain("stacks 2"));
        e = Assert.Throws<ArgumentException>(() =>
            EventFrameDataset.Emulate(
                ImageDataset.FromPixels("rgb", new byte[3 * 28 * 28], new[] { 0 }, 3, 28, 28, 10)
            )
        )!;
        Assert.That(e.Message, Does.Contain("grey-scale"));
        // A bad frame count is refused before any dataset is fetched.
        var nowhere = FetchSettings.Offline with
        {
            CacheDirectory = cache,
        };
        Assert.Throws<ArgumentOutOfRangeException>(() =>
            DatasetCatalog.LoadEventMnist(true, 0, nowhere)
        );
        Assert.Throws<ArgumentOutOfRangeException>(() =>
            DatasetCatalog.LoadEventFashionMnistAsync(false, 300, nowhere)
        );
    }
}
