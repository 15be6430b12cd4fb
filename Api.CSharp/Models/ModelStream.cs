using SnnSpec.Facade;

namespace SnnSpec.Models;

/// <summary>
/// An SNN run over a sequence in consecutive chunks (<see cref="SnnModel.OpenStream"/>, or in integer
/// arithmetic <see cref="SnnModel.OpenIntegerStream"/>): each <see cref="Step(Tensor, ForwardOptions?)"/>
/// runs the next frames from the neuron states the previous call left. For sequences longer than
/// memory holds, or frames that arrive while the model runs. Not thread-safe.
/// </summary>
public sealed class ModelStream
{
    private StreamState state = StreamState.Start;
    private readonly IntegerModel? integerView;

    internal ModelStream(SnnModel model, IntegerModel? integerView)
    {
        Model = model;
        this.integerView = integerView;
    }

    /// <summary>The model this stream runs.</summary>
    public SnnModel Model { get; }

    /// <summary>True when the stream runs in integer arithmetic (<see cref="SnnModel.OpenIntegerStream"/>).</summary>
    public bool IsInteger => integerView is not null;

    /// <summary>Steps run since the stream opened or was reset.</summary>
    public int StepsSeen => state.Steps;

    /// <summary>
    /// Runs the next chunk of frames [t, B, …InputShape] (t ≥ 1, one frame per step; every chunk
    /// of a stream has the same B).
    /// </summary>
    /// <param name="frames">The chunk, time-major.</param>
    /// <param name="options">Mode and probes; null is evaluation mode with logits only (an integer stream has no training mode).</param>
    /// <returns>The chunk's per-step logits [t, B, K] and the requested probes.</returns>
    public ForwardResult Step(Tensor frames, ForwardOptions? options = null)
    {
        Check.NotNull(frames, nameof(frames));
        var inShape = Model.InputShape;
        var s = frames.Shape;
        if (s.Length != inShape.Length + 2 || !s.Skip(2).SequenceEqual(inShape) || s[0] < 1)
        {
            throw new ArgumentException(
                $"frames has shape [{string.Join(", ", s)}]; a chunk of {Model.Name} is [t, B, {string.Join(", ", inShape)}] with t ≥ 1.",
                nameof(frames)
            );
        }
        if (StepsSeen > 0 && state.States.Count > 0)
        {
            int batch = state.States.First().Value.Shape[0];
            if (s[1] != batch)
            {
                throw new ArgumentException(
                    $"frames holds {s[1]} samples but this stream carries {batch}; open another stream (or Reset) for another batch size.",
                    nameof(frames)
                );
            }
        }
        if (integerView is not null)
        {
            var probes = SnnModel.IntegerProbes(options, nameof(options));
            var (output, next, ran) = IntegerExport
                .stepStream(integerView, probes, Model.Inner, state, frames)
                .ToValueTuple();
            state = next;
            return new ForwardResult(output, ran.ToArray());
        }
        var ctx = (options ?? ForwardOptions.Eval).ToFSharp();
        var result = Diff.noGrad(
            Microsoft.FSharp.Core.FuncConvert.FromFunc(() =>
                SnnSpec.Streaming.stepWith(ctx, Model.Inner, state, frames)
            )
        );
        state = result.Item2;
        return new ForwardResult(result.Item1);
    }

    /// <summary>Runs the next chunk given as a flat time-major array (e.g. frames as they arrive from an event camera).</summary>
    /// <param name="frames">steps × batchSize × ∏InputShape values, time-major then row-major.</param>
    /// <param name="steps">The chunk's length t ≥ 1.</param>
    /// <param name="batchSize">B ≥ 1 (the same for every chunk of the stream).</param>
    /// <returns>The chunk's per-step logits [t, B, K].</returns>
    public float[,,] Step(float[] frames, int steps, int batchSize)
    {
        Check.NotNull(frames, nameof(frames));
        Check.Positive(steps, nameof(steps), "steps");
        Check.Positive(batchSize, nameof(batchSize), "batchSize");
        var chunk = Model.FlatInput(
            frames,
            new[] { steps, batchSize },
            nameof(frames),
            $"{steps} steps of {batchSize} samples"
        );
        return Step(chunk).LogitsPerStep();
    }

    /// <summary>Puts every neuron back at rest (the next chunk starts a new sequence).</summary>
    public void Reset() => state = StreamState.Start;
}
