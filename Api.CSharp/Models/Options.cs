using SnnSpec.Facade;

namespace SnnSpec.Models;

/// <summary>The architectures of the model zoo.</summary>
public enum ModelKind
{
    /// <summary>Fully connected SNN (hidden sizes from <see cref="ZooOptions.Hidden"/>).</summary>
    Mlp,

    /// <summary>Small ConvNet for 28×28 digits (conv 32 – conv 64 – fc 128 – fc K).</summary>
    ConvNet,

    /// <summary>VGG-9 (SpikeSim's layer table); inputs of side ≥ 8.</summary>
    Vgg9,

    /// <summary>VGG-11 for CIFAR; inputs of side ≥ 16.</summary>
    Vgg11,

    /// <summary>Spiking ResNet-18 (CIFAR form); inputs of side ≥ 8.</summary>
    ResNet18,

    /// <summary>Spiking ResNet-19; inputs of side ≥ 4.</summary>
    ResNet19,

    /// <summary>MS-ResNet-18 (membrane shortcut); inputs of side ≥ 8.</summary>
    MsResNet18,

    /// <summary>SEW-ResNet-18 with ADD connections; inputs of side ≥ 8.</summary>
    SewResNet18Add,

    /// <summary>SEW-ResNet-18 with IAND connections; inputs of side ≥ 8.</summary>
    SewResNet18IAnd,
}

/// <summary>The neuron model of every spiking population.</summary>
public enum NeuronKind
{
    /// <summary>SpikingJelly LIF: τ = 2, θ = 1, hard reset to 0, sigmoid surrogate (α = 4).</summary>
    Lif,

    /// <summary>Integrate-and-fire of SEW-ResNet: θ = 1, hard reset, detached reset, ATan surrogate.</summary>
    If,

    /// <summary>MINT LIF: θ = 0.5, λ = 0.5 applied after the reset, triangle surrogate.</summary>
    Mint,

    /// <summary>Temporal-KD leaky neuron: H = λ·V + I, λ = 0.5, θ = 1.</summary>
    Leaky,
}

/// <summary>The surrogate gradient of the spike function.</summary>
public enum SurrogateKind
{
    /// <summary>The neuron preset's own surrogate.</summary>
    Default,

    /// <summary>ATan with slope <see cref="NeuronOptions.SurrogateParameter"/> (default 2).</summary>
    ATan,

    /// <summary>Sigmoid with slope <see cref="NeuronOptions.SurrogateParameter"/> (default 4).</summary>
    Sigmoid,

    /// <summary>Triangle of width <see cref="NeuronOptions.SurrogateParameter"/> (default 1), scale 1.</summary>
    Triangle,

    /// <summary>Rectangle (straight-through window) of width <see cref="NeuronOptions.SurrogateParameter"/> (default 1).</summary>
    Rectangle,

    /// <summary>Gaussian of standard deviation <see cref="NeuronOptions.SurrogateParameter"/> (default 0.5).</summary>
    Gaussian,
}

/// <summary>The batch-norm variant of the zoo's layers.</summary>
public enum NormalizationKind
{
    /// <summary>Plain batch norm over every sample and step.</summary>
    Batch,

    /// <summary>Threshold-dependent batch norm (tdBN): batch norm scaled by α·θ.</summary>
    ThresholdDependent,
}

/// <summary>Probe granularity for membrane distillation.</summary>
public enum ProbeLevel
{
    /// <summary>Every spiking population.</summary>
    ConvWise,

    /// <summary>One population per residual block.</summary>
    BlockWise,

    /// <summary>One population per stage.</summary>
    StageWise,
}

/// <summary>A spiking neuron: a preset with optional overrides.</summary>
public sealed record NeuronOptions
{
    /// <summary>The preset the neuron starts from.</summary>
    public NeuronKind Kind { get; init; } = NeuronKind.Lif;

    /// <summary>Firing threshold θ (&gt; 0); null keeps the preset's.</summary>
    public float? Threshold { get; init; }

    /// <summary>Membrane time constant τ ≥ 1 of <see cref="NeuronKind.Lif"/>; null keeps 2.</summary>
    public float? Tau { get; init; }

    /// <summary>Leak λ ∈ [0, 1] of <see cref="NeuronKind.Mint"/> and <see cref="NeuronKind.Leaky"/>; null keeps 0.5.</summary>
    public float? Lambda { get; init; }

    /// <summary>Soft reset (subtract θ) instead of the preset's hard reset to 0.</summary>
    public bool SoftReset { get; init; }

    /// <summary>The surrogate gradient; <see cref="SurrogateKind.Default"/> keeps the preset's.</summary>
    public SurrogateKind Surrogate { get; init; } = SurrogateKind.Default;

    /// <summary>The surrogate's slope, width or σ (&gt; 0); null uses the surrogate's default.</summary>
    public float? SurrogateParameter { get; init; }

    /// <summary>The SpikingJelly LIF preset.</summary>
    public static NeuronOptions Lif => new();

    internal Neuron ToFSharp()
    {
        Neuron preset = Kind switch
        {
            NeuronKind.Lif => NeuronModule.lif,
            NeuronKind.If => NeuronModule.ifNeuron,
            NeuronKind.Mint => NeuronModule.mint,
            NeuronKind.Leaky => NeuronModule.leaky,
            _ => throw new ArgumentOutOfRangeException(
                nameof(Kind),
                Kind,
                "Kind must be one of Lif, If, Mint or Leaky."
            ),
        };
        if (Threshold is { } th)
        {
            Check.PositiveFinite(th, nameof(Threshold), "NeuronOptions.Threshold");
        }
        Dynamics dynamics = preset.Dynamics;
        if (Tau is { } tau)
        {
            if (Kind != NeuronKind.Lif)
            {
                throw new ArgumentException(
                    $"NeuronOptions.Tau applies only to NeuronKind.Lif (Kind is {Kind}); use Lambda for Mint and Leaky.",
                    nameof(Tau)
                );
            }
            if (!(tau >= 1f) || float.IsInfinity(tau))
            {
                throw new ArgumentOutOfRangeException(
                    nameof(Tau),
                    tau,
                    $"NeuronOptions.Tau must be a finite τ >= 1 (got {tau})."
                );
            }
            dynamics = Dynamics.NewLif(tau, true);
        }
        if (Lambda is { } lambda)
        {
            Check.Fraction(lambda, true, nameof(Lambda), "NeuronOptions.Lambda");
            dynamics = Kind switch
            {
                NeuronKind.Mint => Dynamics.NewMint(lambda),
                NeuronKind.Leaky => Dynamics.NewLeaky(lambda),
                _ => throw new ArgumentException(
                    $"NeuronOptions.Lambda applies only to NeuronKind.Mint and NeuronKind.Leaky (Kind is {Kind}); use Tau for Lif.",
                    nameof(Lambda)
                ),
            };
        }
        if (SurrogateParameter is { } sp)
        {
            Check.PositiveFinite(
                sp,
                nameof(SurrogateParameter),
                "NeuronOptions.SurrogateParameter"
            );
        }
        SnnSpec.Surrogate surrogate = Surrogate switch
        {
            SurrogateKind.Default => SurrogateParameter is null
                ? preset.Surrogate
                : throw new ArgumentException(
                    "NeuronOptions.SurrogateParameter needs an explicit Surrogate kind (ATan, Sigmoid, Triangle, Rectangle or Gaussian).",
                    nameof(SurrogateParameter)
                ),
            SurrogateKind.ATan => SnnSpec.Surrogate.NewATan(SurrogateParameter ?? 2f),
            SurrogateKind.Sigmoid => SnnSpec.Surrogate.NewSigmoid(SurrogateParameter ?? 4f),
            SurrogateKind.Triangle => SnnSpec.Surrogate.NewTriangle(SurrogateParameter ?? 1f, 1f),
            SurrogateKind.Rectangle => SnnSpec.Surrogate.NewRectangle(SurrogateParameter ?? 1f),
            SurrogateKind.Gaussian => SnnSpec.Surrogate.NewGaussian(SurrogateParameter ?? 0.5f),
            _ => throw new ArgumentOutOfRangeException(
                nameof(Surrogate),
                Surrogate,
                "Surrogate must be Default, ATan, Sigmoid, Triangle, Rectangle or Gaussian."
            ),
        };
        return new Neuron(
            dynamics,
            Threshold ?? preset.Threshold,
            SoftReset ? Reset.Soft : preset.Reset,
            preset.DetachReset,
            surrogate
        );
    }
}

/// <summary>
/// Options of the model zoo: one set of options builds a teacher (Width = 1), an assistant or a
/// student (Width &lt; 1) of the same topology, as an SNN at <see cref="Steps"/> steps or its ANN twin.
/// The defaults describe MNIST (1×28×28, 10 classes) with LIF neurons at T = 4.
/// </summary>
public sealed record ZooOptions
{
    /// <summary>Channel (and hidden-unit) multiplier &gt; 0: a layer of c channels gets max(1, round(c·Width)).</summary>
    public float Width { get; init; } = 1f;

    /// <summary>Time steps T ≥ 1 of the SNN.</summary>
    public int Steps { get; init; } = 4;

    /// <summary>Build the ANN twin (every spiking layer a ReLU, one step) instead of the SNN.</summary>
    public bool Ann { get; init; }

    /// <summary>Input channels (1 for MNIST, 3 for CIFAR).</summary>
    public int InputChannels { get; init; } = 1;

    /// <summary>Side of the square input image.</summary>
    public int InputSize { get; init; } = 28;

    /// <summary>Number of classes.</summary>
    public int Classes { get; init; } = 10;

    /// <summary>The neuron of every spiking population.</summary>
    public NeuronOptions Neuron { get; init; } = new();

    /// <summary>The batch-norm variant.</summary>
    public NormalizationKind Normalization { get; init; } = NormalizationKind.Batch;

    /// <summary>α of threshold-dependent batch norm (used only with <see cref="NormalizationKind.ThresholdDependent"/>).</summary>
    public float NormAlpha { get; init; } = 1f;

    /// <summary>Dropout probability in [0, 1) before the classifier; 0 adds no dropout layer.</summary>
    public float Dropout { get; init; }

    /// <summary>MINT-style direct encoding: the first conv runs once and its output is repeated over T.</summary>
    public bool EncodeFirstConv { get; init; }

    /// <summary>Hidden layer sizes of <see cref="ModelKind.Mlp"/> (scaled by Width).</summary>
    public IReadOnlyList<int> Hidden { get; init; } = new[] { 256 };

    /// <summary>Seed of the parameter initialisation: the same seed gives the same values.</summary>
    public int Seed { get; init; }

    /// <summary>
    /// For an ANN on event frames: read sequences of this many frames [T, B, C, H, W] concatenated
    /// along channels ([B, T·C, H, W], frame 0 first) instead of their time-mean; 0 for none.
    /// <see cref="InputChannels"/> stays the per-frame channel count.
    /// </summary>
    public int StackFrames { get; init; }

    /// <summary>
    /// The input geometry and class count of a dataset, and for event frames T = its frame count
    /// (an SNN reads one frame per step); other options keep their defaults.
    /// </summary>
    /// <param name="data">Images [C, H, H] or frames [T, C, H, H].</param>
    public static ZooOptions For(Datasets.Dataset data)
    {
        Check.NotNull(data, nameof(data));
        var s = data.StepShape;
        if (s.Length != 3 || s[1] != s[2])
        {
            throw new ArgumentException(
                $"{data.Name} holds samples of shape [{string.Join(", ", data.SampleShape)}]; the zoo takes square images [C, H, H] or frames [T, C, H, H].",
                nameof(data)
            );
        }
        return new ZooOptions
        {
            InputChannels = s[0],
            InputSize = s[1],
            Classes = data.Classes,
            Steps = data.Frames > 0 ? data.Frames : 4,
        };
    }

    /// <summary>MNIST / Fashion-MNIST: 1×28×28, 10 classes.</summary>
    public static ZooOptions Mnist => new();

    /// <summary>CIFAR-10: 3×32×32, 10 classes.</summary>
    public static ZooOptions Cifar10 => new() { InputChannels = 3, InputSize = 32 };

    /// <summary>CIFAR-100: 3×32×32, 100 classes.</summary>
    public static ZooOptions Cifar100 =>
        new()
        {
            InputChannels = 3,
            InputSize = 32,
            Classes = 100,
        };

    internal void Validate()
    {
        Check.PositiveFinite(Width, nameof(Width), "ZooOptions.Width");
        Check.Positive(Steps, nameof(Steps), "ZooOptions.Steps (the number of time steps T)");
        Check.Positive(InputChannels, nameof(InputChannels), "ZooOptions.InputChannels");
        Check.Positive(InputSize, nameof(InputSize), "ZooOptions.InputSize");
        Check.Positive(Classes, nameof(Classes), "ZooOptions.Classes");
        Check.Fraction(Dropout, false, nameof(Dropout), "ZooOptions.Dropout");
        Check.PositiveFinite(NormAlpha, nameof(NormAlpha), "ZooOptions.NormAlpha");
        Check.NonNegative(StackFrames, nameof(StackFrames), "ZooOptions.StackFrames");
        if (StackFrames > 0 && !Ann)
        {
            throw new ArgumentException(
                "ZooOptions.StackFrames is set but Ann is false: only an ANN stacks frames (an SNN reads one frame per step). Set Ann = true or StackFrames = 0.",
                nameof(StackFrames)
            );
        }
        if (Neuron is null)
        {
            throw new ArgumentNullException(nameof(Neuron), "ZooOptions.Neuron must not be null.");
        }
    }

    internal ZooConfig ToFSharp()
    {
        Validate();
        var neuron = Neuron.ToFSharp();
        NormKind norm = Normalization switch
        {
            NormalizationKind.Batch => NormKind.Batch,
            NormalizationKind.ThresholdDependent => NormKind.NewThresholdDependent(
                NormAlpha,
                neuron.Threshold
            ),
            _ => throw new ArgumentOutOfRangeException(
                nameof(Normalization),
                Normalization,
                "Normalization must be Batch or ThresholdDependent."
            ),
        };
        return new ZooConfig(
            Width,
            neuron,
            StackFrames > 0 ? InputChannels * StackFrames : InputChannels,
            InputSize,
            Classes,
            norm,
            Dropout,
            EncodeFirstConv
        );
    }

    internal ExecutionMode Mode => Ann ? ExecutionMode.Ann : ExecutionMode.NewSnn(Steps);
}

/// <summary>
/// Bit widths of a quantized deployment: weights and stored membrane values. Null means full
/// precision (FP32).
/// </summary>
public sealed record QuantizationOptions
{
    /// <summary>Weight bits in 1…16, or null for full precision.</summary>
    public int? WeightBits { get; init; }

    /// <summary>Bits per stored membrane value in 1…32, or null for full precision (32).</summary>
    public int? MembraneBits { get; init; }

    /// <summary>Full precision: no quantization.</summary>
    public static QuantizationOptions FullPrecision => new();

    /// <summary>Weights and membranes both at <paramref name="bits"/> bits (MD-SNN's MS-N).</summary>
    /// <param name="bits">Bit width in 1…16.</param>
    public static QuantizationOptions Uniform(int bits)
    {
        Check.Range(bits, 1, 16, nameof(bits), "the bit width");
        return new QuantizationOptions { WeightBits = bits, MembraneBits = bits };
    }

    /// <summary>True when both widths are full precision.</summary>
    public bool IsFullPrecision => WeightBits is null && MembraneBits is null;

    /// <summary>
    /// Quantization-aware training (<see cref="SnnModel.Quantize"/>): a Conv2d directly followed by batch
    /// norm runs folded (W' = W·γ/σ, b' = β + γ·(b − μ)/σ) and the folded weight and bias are quantized.
    /// Default true (MINT's recipe).
    /// </summary>
    public bool FoldBatchNorm { get; init; } = true;

    /// <summary>
    /// Quantization-aware training: keep the first weight layer (the direct-encoding conv) and the
    /// population it feeds in full precision. Default true (MINT's recipe).
    /// </summary>
    public bool KeepFirstLayerFullPrecision { get; init; } = true;

    /// <summary>
    /// Quantization-aware training: quantize membranes on a uniform grid (integer-exportable) instead
    /// of MINT's tanh-mapped grid. Default false.
    /// </summary>
    public bool UniformMembraneGrid { get; init; }

    /// <summary>
    /// Quantization-aware training: a population's membrane shares the scale α of the weight layer
    /// feeding it (true, MINT's share mode) or learns its own (false).
    /// </summary>
    public bool ShareMembraneScale { get; init; } = true;

    /// <summary>Quantization-aware training: Conv2d, Linear or spiking layers (full names) left in full precision.</summary>
    public IReadOnlyList<string> FullPrecisionLayers { get; init; } = Array.Empty<string>();

    internal void Validate()
    {
        if (WeightBits is { } w)
        {
            Check.Range(w, 1, 16, nameof(WeightBits), "QuantizationOptions.WeightBits");
        }
        if (MembraneBits is { } m)
        {
            Check.Range(m, 1, 32, nameof(MembraneBits), "QuantizationOptions.MembraneBits");
        }
    }

    internal QuantConfig ToQuantConfig()
    {
        if (MembraneBits is > 16)
        {
            throw new ArgumentOutOfRangeException(
                nameof(MembraneBits),
                MembraneBits,
                $"quantization-aware training takes QuantizationOptions.MembraneBits in 1…16 or null (got {MembraneBits})."
            );
        }
        if (FullPrecisionLayers is null || FullPrecisionLayers.Any(string.IsNullOrWhiteSpace))
        {
            throw new ArgumentException(
                "QuantizationOptions.FullPrecisionLayers must be a list of non-empty layer names.",
                nameof(FullPrecisionLayers)
            );
        }
        var membrane = MembraneBits is { } m
            ? SnnSpec.Bits.NewFixed(m)
            : SnnSpec.Bits.FullPrecision;
        var fp = QuantConfig.FullPrecision;
        return new QuantConfig(
            WeightBitsFSharp,
            membrane,
            WeightBitsFSharp,
            UniformMembraneGrid ? MembraneScheme.Uniform : MembraneScheme.Mint,
            ShareMembraneScale,
            FoldBatchNorm,
            KeepFirstLayerFullPrecision,
            Interop.ToFSharpSet(FullPrecisionLayers),
            fp.PerLayer
        );
    }

    internal Bits WeightBitsFSharp =>
        WeightBits is { } b ? SnnSpec.Bits.NewFixed(b) : SnnSpec.Bits.FullPrecision;
}
