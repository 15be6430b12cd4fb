using SnnSpec.Facade;
using ActivationT = SnnSpec.ActivationOps.TensorModule;
using CreationT = SnnSpec.CreationOps.TensorModule;
using ElementwiseT = SnnSpec.ElementwiseOps.TensorModule;
using LossT = SnnSpec.LossOps.TensorModule;
using ReduceT = SnnSpec.ReduceOps.TensorModule;
using ShapeT = SnnSpec.ShapeOps.TensorModule;

namespace SnnSpec.Tensors;

/// <summary>
/// Creating, converting and combining <see cref="Tensor"/> values from C#. <see cref="Tensor"/> itself
/// (shape, <c>ToArray</c>, indexer, + − * / operators) is used directly; these are the F# core's
/// functions under C# names. Every operation is differentiable where the core's is, so custom
/// distillation losses can be written with them.
/// </summary>
public static class TensorOps
{
    private static void CheckShape(int[] shape, string name)
    {
        Check.NotNull(shape, name);
        for (int i = 0; i < shape.Length; i++)
        {
            if (shape[i] < 0)
            {
                throw new ArgumentOutOfRangeException(
                    name,
                    $"{name}[{i}] = {shape[i]}: every dimension must be >= 0."
                );
            }
        }
    }

    /// <summary>A tensor of the given shape holding a copy of <paramref name="data"/> (row-major).</summary>
    /// <param name="data">The elements, row-major; their count must equal the product of the shape.</param>
    /// <param name="shape">The dimensions, outermost first.</param>
    public static Tensor FromArray(float[] data, params int[] shape)
    {
        Check.NotNull(data, nameof(data));
        CheckShape(shape, nameof(shape));
        long n = shape.Aggregate(1L, (a, d) => a * d);
        if (n != data.LongLength)
        {
            throw new ArgumentException(
                $"data has {data.Length} elements but shape [{string.Join(", ", shape)}] needs {n}.",
                nameof(data)
            );
        }
        return CreationT.ofArray(shape, data);
    }

    /// <summary>A rank-2 tensor from a rectangular array.</summary>
    /// <param name="data">Rows × columns values.</param>
    public static Tensor FromArray(float[,] data)
    {
        Check.NotNull(data, nameof(data));
        var flat = new float[data.Length];
        Buffer.BlockCopy(data, 0, flat, 0, flat.Length * sizeof(float));
        return CreationT.ofArray(new[] { data.GetLength(0), data.GetLength(1) }, flat);
    }

    /// <summary>A rank-3 tensor from a three-dimensional array.</summary>
    /// <param name="data">The values.</param>
    public static Tensor FromArray(float[,,] data)
    {
        Check.NotNull(data, nameof(data));
        var flat = new float[data.Length];
        Buffer.BlockCopy(data, 0, flat, 0, flat.Length * sizeof(float));
        return CreationT.ofArray(
            new[] { data.GetLength(0), data.GetLength(1), data.GetLength(2) },
            flat
        );
    }

    /// <summary>A tensor of zeros.</summary>
    /// <param name="shape">The dimensions.</param>
    public static Tensor Zeros(params int[] shape)
    {
        CheckShape(shape, nameof(shape));
        return CreationT.zeros(shape);
    }

    /// <summary>A tensor of ones.</summary>
    /// <param name="shape">The dimensions.</param>
    public static Tensor Ones(params int[] shape)
    {
        CheckShape(shape, nameof(shape));
        return CreationT.ones(shape);
    }

    /// <summary>A tensor filled with one value.</summary>
    /// <param name="value">The fill value.</param>
    /// <param name="shape">The dimensions.</param>
    public static Tensor Full(float value, params int[] shape)
    {
        CheckShape(shape, nameof(shape));
        return CreationT.full(shape, value);
    }

    /// <summary>A rank-0 tensor.</summary>
    /// <param name="value">The value.</param>
    public static Tensor Scalar(float value) => CreationT.scalar(value);

    /// <summary>Uniform draws in [0, 1): the same seed always gives the same tensor.</summary>
    /// <param name="seed">The random seed.</param>
    /// <param name="shape">The dimensions.</param>
    public static Tensor Rand(int seed, params int[] shape)
    {
        CheckShape(shape, nameof(shape));
        return CreationT.rand(RngModule.create(seed), shape);
    }

    /// <summary>Standard normal draws: the same seed always gives the same tensor.</summary>
    /// <param name="seed">The random seed.</param>
    /// <param name="shape">The dimensions.</param>
    public static Tensor Randn(int seed, params int[] shape)
    {
        CheckShape(shape, nameof(shape));
        return CreationT.randn(RngModule.create(seed), shape);
    }

    /// <summary>A rank-2 tensor's elements as a [rows, columns] array.</summary>
    /// <param name="tensor">A rank-2 tensor.</param>
    public static float[,] ToArray2D(Tensor tensor)
    {
        Check.NotNull(tensor, nameof(tensor));
        RequireRank(tensor, 2);
        var s = tensor.Shape;
        var r = new float[s[0], s[1]];
        Buffer.BlockCopy(tensor.ToArray(), 0, r, 0, r.Length * sizeof(float));
        return r;
    }

    /// <summary>A rank-3 tensor's elements as a three-dimensional array (e.g. logits [T, B, K]).</summary>
    /// <param name="tensor">A rank-3 tensor.</param>
    public static float[,,] ToArray3D(Tensor tensor)
    {
        Check.NotNull(tensor, nameof(tensor));
        RequireRank(tensor, 3);
        var s = tensor.Shape;
        var r = new float[s[0], s[1], s[2]];
        Buffer.BlockCopy(tensor.ToArray(), 0, r, 0, r.Length * sizeof(float));
        return r;
    }

    private static void RequireRank(Tensor t, int rank)
    {
        if (t.Rank != rank)
        {
            throw new ArgumentException(
                $"expected a rank-{rank} tensor, got shape [{string.Join(", ", t.Shape)}] (rank {t.Rank}).",
                "tensor"
            );
        }
    }

    /// <summary>The mean of all elements (rank 0).</summary>
    /// <param name="x">The tensor.</param>
    public static Tensor Mean(Tensor x) => ReduceT.mean(Check.NotNull(x, nameof(x)));

    /// <summary>The sum of all elements (rank 0).</summary>
    /// <param name="x">The tensor.</param>
    public static Tensor Sum(Tensor x) => ReduceT.sum(Check.NotNull(x, nameof(x)));

    /// <summary>The mean over the given axes.</summary>
    /// <param name="x">The tensor.</param>
    /// <param name="keepDims">Keep reduced axes as size 1.</param>
    /// <param name="dims">Axes (negative counts from the end).</param>
    public static Tensor MeanOver(Tensor x, bool keepDims, params int[] dims) =>
        ReduceT.meanDims(Check.NotNull(dims, nameof(dims)), keepDims, Check.NotNull(x, nameof(x)));

    /// <summary>The sum over the given axes.</summary>
    /// <param name="x">The tensor.</param>
    /// <param name="keepDims">Keep reduced axes as size 1.</param>
    /// <param name="dims">Axes (negative counts from the end).</param>
    public static Tensor SumOver(Tensor x, bool keepDims, params int[] dims) =>
        ReduceT.sumDims(Check.NotNull(dims, nameof(dims)), keepDims, Check.NotNull(x, nameof(x)));

    /// <summary>Elementwise square.</summary>
    /// <param name="x">The tensor.</param>
    public static Tensor Square(Tensor x) => ElementwiseT.square(Check.NotNull(x, nameof(x)));

    /// <summary>Elementwise absolute value.</summary>
    /// <param name="x">The tensor.</param>
    public static Tensor Abs(Tensor x) => ElementwiseT.abs(Check.NotNull(x, nameof(x)));

    /// <summary>Elementwise exponential.</summary>
    /// <param name="x">The tensor.</param>
    public static Tensor Exp(Tensor x) => ElementwiseT.exp(Check.NotNull(x, nameof(x)));

    /// <summary>Elementwise natural logarithm.</summary>
    /// <param name="x">The tensor.</param>
    public static Tensor Log(Tensor x) => ElementwiseT.log(Check.NotNull(x, nameof(x)));

    /// <summary>Softmax along an axis.</summary>
    /// <param name="x">The tensor.</param>
    /// <param name="dim">The axis (negative counts from the end).</param>
    public static Tensor Softmax(Tensor x, int dim = -1) =>
        ActivationT.softmax(dim, Check.NotNull(x, nameof(x)));

    /// <summary>Log-softmax along an axis.</summary>
    /// <param name="x">The tensor.</param>
    /// <param name="dim">The axis (negative counts from the end).</param>
    public static Tensor LogSoftmax(Tensor x, int dim = -1) =>
        ActivationT.logSoftmax(dim, Check.NotNull(x, nameof(x)));

    /// <summary>Mean squared error between two tensors of the same shape.</summary>
    /// <param name="prediction">The prediction.</param>
    /// <param name="target">The target.</param>
    public static Tensor Mse(Tensor prediction, Tensor target) =>
        LossT.mse(
            Check.NotNull(prediction, nameof(prediction)),
            Check.NotNull(target, nameof(target))
        );

    /// <summary>Mean absolute error between two tensors of the same shape.</summary>
    /// <param name="prediction">The prediction.</param>
    /// <param name="target">The target.</param>
    public static Tensor L1(Tensor prediction, Tensor target) =>
        LossT.l1(
            Check.NotNull(prediction, nameof(prediction)),
            Check.NotNull(target, nameof(target))
        );

    /// <summary>Cross-entropy of [B, K] logits against class labels (batch mean).</summary>
    /// <param name="logits">Logits [B, K].</param>
    /// <param name="labels">One class in [0, K) per sample.</param>
    public static Tensor CrossEntropy(Tensor logits, int[] labels) =>
        LossT.crossEntropyIdx(
            Check.NotNull(logits, nameof(logits)),
            Check.NotNull(labels, nameof(labels))
        );

    /// <summary>Hinton's KD term τ²·KL(softmax(teacher/τ) ‖ softmax(student/τ)) of [B, K] logits, batch mean.</summary>
    /// <param name="teacherLogits">Teacher logits [B, K].</param>
    /// <param name="studentLogits">Student logits [B, K].</param>
    /// <param name="tau">Temperature τ &gt; 0.</param>
    public static Tensor KlDivLogits(Tensor teacherLogits, Tensor studentLogits, float tau)
    {
        Check.PositiveFinite(tau, nameof(tau), "tau (the temperature)");
        return LossT.klDivLogits(
            Check.NotNull(teacherLogits, nameof(teacherLogits)),
            Check.NotNull(studentLogits, nameof(studentLogits)),
            tau
        );
    }

    /// <summary>The same shape with new dimensions (one may be −1).</summary>
    /// <param name="x">The tensor.</param>
    /// <param name="shape">The new dimensions.</param>
    public static Tensor Reshape(Tensor x, params int[] shape) =>
        ShapeT.reshape(Check.NotNull(shape, nameof(shape)), Check.NotNull(x, nameof(x)));

    /// <summary>The sub-tensor at one index of an axis (the axis removed).</summary>
    /// <param name="x">The tensor.</param>
    /// <param name="dim">The axis.</param>
    /// <param name="index">The index along it.</param>
    public static Tensor Select(Tensor x, int dim, int index) =>
        ShapeT.select(dim, index, Check.NotNull(x, nameof(x)));

    /// <summary>A range [start, start + length) of an axis.</summary>
    /// <param name="x">The tensor.</param>
    /// <param name="dim">The axis.</param>
    /// <param name="start">First index.</param>
    /// <param name="length">Number of indices.</param>
    public static Tensor Narrow(Tensor x, int dim, int start, int length) =>
        ShapeT.narrow(dim, start, length, Check.NotNull(x, nameof(x)));

    /// <summary>The same values with gradients stopped.</summary>
    /// <param name="x">The tensor.</param>
    public static Tensor Detach(Tensor x) => Diff.detach(Check.NotNull(x, nameof(x)));
}
