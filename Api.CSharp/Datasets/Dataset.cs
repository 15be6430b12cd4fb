using SnnSpec.Data;
using SnnSpec.Facade;

namespace SnnSpec.Datasets;

/// <summary>
/// Labelled samples the trainer and evaluator read: an <see cref="ImageDataset"/> (samples
/// [C, H, W]) or an <see cref="EventFrameDataset"/> (sequences of T frames [T, C, H, W], batched
/// time-major as [T, B, C, H, W] so that an SNN reads one frame per step).
/// </summary>
public abstract class Dataset
{
    private protected Dataset() { }

    internal abstract ISampleSource Source { get; }

    internal abstract Dataset SubsetOf(int[] indices);

    /// <summary>The set's name, e.g. "MNIST".</summary>
    public abstract string Name { get; }

    /// <summary>Number of classes.</summary>
    public abstract int Classes { get; }

    /// <summary>Number of samples.</summary>
    public int Count => Source.Count;

    /// <summary>The shape of one sample: [C, H, W] for images, [T, C, H, W] for event frames.</summary>
    public int[] SampleShape => (int[])Source.SampleShape.Clone();

    /// <summary>Frames T per sample of a sequence set; 0 for images.</summary>
    public int Frames => Source.SampleShape.Length == 4 ? Source.SampleShape[0] : 0;

    /// <summary>What a model reads per step: the sample shape without its frame axis, [C, H, W].</summary>
    public int[] StepShape => Frames > 0 ? SampleShape[1..] : SampleShape;

    /// <summary>The label of every sample, in order.</summary>
    public int[] Labels => Enumerable.Range(0, Count).Select(Source.Label).ToArray();

    /// <summary>Epochs of batches over this set ([B, C, H, W], or [T, B, C, H, W] for frames).</summary>
    /// <param name="options">Batch size, shuffling and prefetching; null uses the defaults (64, shuffled).</param>
    public DataLoader Batches(BatchingOptions? options = null) =>
        new(Source, options ?? new BatchingOptions());

    /// <summary>The indices as an array, each checked to lie in [0, Count).</summary>
    private protected int[] Indices(IEnumerable<int> indices)
    {
        var idx = Check.NotNull(indices, nameof(indices)).ToArray();
        foreach (var i in idx)
        {
            if (i < 0 || i >= Count)
            {
                throw new ArgumentOutOfRangeException(
                    nameof(indices),
                    i,
                    $"index {i} is outside the set; indices must lie in [0, {Count})."
                );
            }
        }
        return idx;
    }

    /// <summary>
    /// Throws an <see cref="ArgumentException"/> naming <paramref name="param"/> when a model of
    /// this input shape, mode and T cannot read these samples.
    /// </summary>
    /// <param name="model">The model.</param>
    /// <param name="role">How the message names the model, e.g. "the student" (null: its name alone).</param>
    /// <param name="what">How the message names the data, e.g. "data".</param>
    /// <param name="param">The parameter the exception names.</param>
    internal void CheckReadableBy(Models.SnnModel model, string? role, string what, string param)
    {
        var who = role is null ? model.Name : $"{role} {model.Name}";
        if (!StepShape.SequenceEqual(model.InputShape))
        {
            throw new ArgumentException(
                $"{what} holds samples of shape [{string.Join(", ", SampleShape)}] but {who} takes [{string.Join(", ", model.InputShape)}]{(Frames > 0 ? " per frame" : "")}.",
                param
            );
        }
        if (Frames == 0 && model.StackedFrames is { } stacks)
        {
            throw new ArgumentException(
                $"{what} holds images but {who} stacks {stacks} event frames. Use an EventFrameDataset of {stacks} frames.",
                param
            );
        }
        if (Frames > 0 && model.StackedFrames is { } f && f != Frames)
        {
            throw new ArgumentException(
                $"{what} holds sequences of {Frames} frames but {who} stacks {f}. Use a set of {f} frames.",
                param
            );
        }
        if (Frames > 0 && !model.IsAnn && model.StackedFrames is null && model.Steps != Frames)
        {
            throw new ArgumentException(
                $"{what} holds sequences of {Frames} frames but {who} runs T = {model.Steps}; an SNN reads one frame per step. Use WithSteps({Frames}) or a set of {model.Steps} frames.",
                param
            );
        }
    }
}
