using Microsoft.FSharp.Collections;
using SnnSpec.Datasets;
using SnnSpec.Facade;

namespace SnnSpec.Models;

/// <summary>What a forward run records besides the logits.</summary>
public sealed record ForwardOptions
{
    /// <summary>Training mode: batch statistics in batch norm, dropout active.</summary>
    public bool Training { get; init; }

    /// <summary>Seed of the dropout masks (training mode only).</summary>
    public int Seed { get; init; }

    /// <summary>Spiking populations whose membrane potentials ([T, B, …]) are returned.</summary>
    public IReadOnlyList<string> Membranes { get; init; } = Array.Empty<string>();

    /// <summary>Spiking populations whose spikes ([T, B, …]) are returned.</summary>
    public IReadOnlyList<string> Spikes { get; init; } = Array.Empty<string>();

    /// <summary>Tap layers (e.g. "feature") whose values ([T, B, …]) are returned.</summary>
    public IReadOnlyList<string> Taps { get; init; } = Array.Empty<string>();

    /// <summary>Compute every population's firing rate (mean spikes per neuron per step).</summary>
    public bool FiringRates { get; init; }

    /// <summary>Evaluation mode, logits only.</summary>
    public static ForwardOptions Eval => new();

    internal ForwardContext ToFSharp()
    {
        var probes = new ProbeRequest(
            Interop.ToFSharpSet(Check.NotNull(Membranes, nameof(Membranes))),
            Interop.ToFSharpSet(Check.NotNull(Spikes, nameof(Spikes))),
            Interop.ToFSharpSet(Check.NotNull(Taps, nameof(Taps))),
            FiringRates
        );
        return new ForwardContext(
            Training,
            RngModule.create(Seed),
            probes,
            Interop.None<FSharpMap<string, Tensor>>(),
            false
        );
    }
}

/// <summary>The result of a forward run.</summary>
public sealed class ForwardResult
{
    internal ForwardResult(ForwardOutput output, IReadOnlyList<string>? integerLayers = null)
    {
        Output = output;
        IntegerLayers = integerLayers ?? Array.Empty<string>();
        Membranes = Interop.ToDictionary(output.Membranes);
        Spikes = Interop.ToDictionary(output.Spikes);
        Taps = Interop.ToDictionary(output.Taps);
        FiringRates = Interop.ToDictionary(output.FiringRates);
    }

    internal ForwardOutput Output { get; }

    /// <summary>Per-step logits [T, B, K] (an ANN twin: [1, B, K]).</summary>
    public Tensor Logits => Output.Logits;

    /// <summary>Recorded membrane potentials by population name, each [T, B, …].</summary>
    public IReadOnlyDictionary<string, Tensor> Membranes { get; }

    /// <summary>Recorded spikes by population name, each [T, B, …].</summary>
    public IReadOnlyDictionary<string, Tensor> Spikes { get; }

    /// <summary>Recorded taps by name, each [T, B, …].</summary>
    public IReadOnlyDictionary<string, Tensor> Taps { get; }

    /// <summary>
    /// Firing rates by population name (when requested), and for a population followed by a
    /// max-pool the rate of its pooled spikes under "population/maxpool" (what the next layer reads).
    /// </summary>
    public IReadOnlyDictionary<string, float> FiringRates { get; }

    /// <summary>
    /// The weight layers whose products ran in integer arithmetic (<see cref="SnnModel.ForwardInteger"/>,
    /// <see cref="SnnModel.OpenIntegerStream"/>); empty for a float run.
    /// </summary>
    public IReadOnlyList<string> IntegerLayers { get; }

    /// <summary>The per-step logits as a [T, B, K] array.</summary>
    public float[,,] LogitsPerStep() => SnnSpec.Tensors.TensorOps.ToArray3D(Output.Logits);

    /// <summary>Predicted class of every sample: the arg-max of the time-mean logits.</summary>
    public int[] Predictions() => Readout.predict(Output.Logits);
}

/// <summary>
/// An SNN (or its ANN twin) from the model zoo: architecture, time steps, parameters and batch-norm
/// statistics. Values are immutable: <see cref="WithSteps"/>, <see cref="AsAnn"/> and training return new models.
/// </summary>
public sealed class SnnModel
{
    internal SnnModel(Model model, QuantConfig? quantization = null)
    {
        Inner = model;
        Quantization = quantization;
    }

    internal Model Inner { get; }

    /// <summary>The configuration the model was quantized with (null when it is not): saved checkpoints store it so that they load back quantized.</summary>
    internal QuantConfig? Quantization { get; }

    private IntegerModel? integerView;

    /// <summary>The model's integer view (IntegerExport.export), computed once per model value.</summary>
    /// <exception cref="InvalidOperationException">The model is full precision, or no layer can run in integers.</exception>
    internal IntegerModel IntegerView(string operation)
    {
        if (integerView is not null)
        {
            return integerView;
        }
        if (!IsQuantized)
        {
            throw new InvalidOperationException(
                $"the model {Name} is full precision; {operation} needs a quantized model. Call Quantize (and CalibrateScales, FitScales) first."
            );
        }
        if (IsAnn)
        {
            throw new InvalidOperationException(
                $"{Name} runs as its ANN twin, which has no spiking populations for integer pairs; {operation} needs the SNN (the model before AsAnn)."
            );
        }
        try
        {
            integerView = IntegerExport.export(Inner);
        }
        catch (SnnSpecException e)
        {
            throw new InvalidOperationException(e.Message, e);
        }
        return integerView;
    }

    /// <summary>
    /// Loads a model saved by <see cref="Save"/> or written by the snnspec CLI (train, quantize, distill):
    /// architecture, parameters, batch-norm statistics, time steps and, for a quantized model, its
    /// quantization plan and scales.
    /// </summary>
    /// <param name="path">A .safetensors model checkpoint.</param>
    /// <exception cref="FileNotFoundException">No file at the path.</exception>
    /// <exception cref="SnnSpec.IO.CheckpointFormatException">The file is damaged or not a model checkpoint (the message gives the byte offset and the fix).</exception>
    public static SnnModel Load(string path)
    {
        Check.Name(path, nameof(path));
        if (!File.Exists(path))
        {
            throw new FileNotFoundException(
                $"there is no model checkpoint at {path}; give the path of a .safetensors file written by SnnModel.Save or the snnspec CLI.",
                path
            );
        }
        var c = SnnSpec.IO.SpecFileModule.loadModel(path);
        var q = c.Quantization is { } json
            ? SnnSpec.IO.SpecFileModule.parseQuantization(json.Value).Config
            : null;
        return new SnnModel(c.Model, q);
    }

    /// <summary>
    /// Saves the model as a safetensors checkpoint that <see cref="Load"/> and the snnspec CLI (eval,
    /// quantize, a spec's teacher checkpoint) read. The file is written to a temporary name and then
    /// moved into place, so an existing file at the path survives a failed write.
    /// </summary>
    /// <param name="path">The file to write (its directory is created).</param>
    public void Save(string path)
    {
        Check.Name(path, nameof(path));
        SnnSpec.IO.SpecFileModule.saveModel(
            path,
            Quantization is null ? Interop.None<QuantConfig>() : Interop.Some(Quantization),
            MapModule.Empty<string, string>(),
            Inner
        );
    }

    /// <summary>
    /// Saves the model with its integer export (docs/integer-export.md): the checkpoint
    /// <see cref="Save"/> writes plus integer weight and bias codes, thresholds, leak shifts and
    /// scales, every quantization parameter explicit, for hardware and tools outside .NET. It loads
    /// back with <see cref="Load"/>.
    /// </summary>
    /// <param name="path">The file to write (its directory is created).</param>
    /// <exception cref="InvalidOperationException">The model is not quantized.</exception>
    public void ExportInteger(string path)
    {
        Check.Name(path, nameof(path));
        if (!IsQuantized)
        {
            throw new InvalidOperationException(
                $"the model {Name} is full precision; an integer export needs a quantized model. Call Quantize (and CalibrateScales, FitScales) first."
            );
        }
        try
        {
            SnnSpec.IO.IntegerExportFile.save(
                path,
                Quantization is null
                    ? Interop.None<string>()
                    : Interop.Some(SnnSpec.IO.SpecFileModule.quantizationJson(Quantization, false)),
                MapModule.Empty<string, string>(),
                Inner
            );
        }
        catch (SnnSpecException e)
        {
            throw new InvalidOperationException(e.Message, e);
        }
    }

    /// <summary>Builds a freshly initialised zoo model.</summary>
    /// <param name="kind">The architecture.</param>
    /// <param name="options">Width, steps, input geometry, neuron and seed; null uses the MNIST defaults.</param>
    /// <returns>The model; the same options give the same parameter values.</returns>
    /// <exception cref="ArgumentException">An option is outside its range (the message names it).</exception>
    public static SnnModel Create(ModelKind kind, ZooOptions? options = null)
    {
        var o = options ?? new ZooOptions();
        var cfg = o.ToFSharp();
        Architecture arch = kind switch
        {
            ModelKind.Mlp => Zoo.mlp(cfg, ValidatedHidden(o.Hidden)),
            ModelKind.ConvNet => Zoo.convNet(WithMinSize(cfg, 4, kind)),
            ModelKind.Vgg9 => Zoo.vgg9(WithMinSize(cfg, 8, kind)),
            ModelKind.Vgg11 => Zoo.vgg11(WithMinSize(cfg, 16, kind)),
            ModelKind.ResNet18 => Zoo.resnet18(WithMinSize(cfg, 8, kind)),
            ModelKind.ResNet19 => Zoo.resnet19(WithMinSize(cfg, 4, kind)),
            ModelKind.MsResNet18 => Zoo.msResnet18(WithMinSize(cfg, 8, kind)),
            ModelKind.SewResNet18Add => Zoo.sewResnet18(
                WithMinSize(cfg, 8, kind),
                ResidualKind.SewAdd
            ),
            ModelKind.SewResNet18IAnd => Zoo.sewResnet18(
                WithMinSize(cfg, 8, kind),
                ResidualKind.SewIAnd
            ),
            _ => throw new ArgumentOutOfRangeException(
                nameof(kind),
                kind,
                $"kind must be one of {string.Join(", ", Enum.GetNames<ModelKind>())}."
            ),
        };
        if (o.StackFrames > 0)
        {
            arch = ArchitectureModule.stackFrames(o.StackFrames, arch);
        }
        return new SnnModel(ModelModule.init(o.Seed, o.Mode, arch));
    }

    private static FSharpList<int> ValidatedHidden(IReadOnlyList<int>? hidden)
    {
        if (hidden is null || hidden.Count == 0 || hidden.Any(h => h < 1))
        {
            throw new ArgumentException(
                $"ZooOptions.Hidden must list at least one positive layer size for ModelKind.Mlp (got [{string.Join(", ", hidden ?? Array.Empty<int>())}]).",
                nameof(ZooOptions.Hidden)
            );
        }
        return Interop.ToFSharpList(hidden);
    }

    private static ZooConfig WithMinSize(ZooConfig cfg, int min, ModelKind kind)
    {
        if (cfg.InputSize < min)
        {
            throw new ArgumentOutOfRangeException(
                nameof(ZooOptions.InputSize),
                cfg.InputSize,
                $"ZooOptions.InputSize must be at least {min} for {kind} (its downsampling stack needs it); got {cfg.InputSize}."
            );
        }
        return cfg;
    }

    /// <summary>The architecture's name, e.g. "convnet" or "vgg9 (width 0.5)".</summary>
    public string Name => Inner.Architecture.Name;

    /// <summary>Time steps T of the SNN (1 for the ANN twin).</summary>
    public int Steps => Inner.Mode is ExecutionMode.Snn s ? s.steps : 1;

    /// <summary>True for the ANN twin (spiking layers replaced by ReLU).</summary>
    public bool IsAnn => Inner.Mode.IsAnn;

    /// <summary>The frames T an ANN reads concatenated along channels (<see cref="ZooOptions.StackFrames"/>); null when it does not stack frames.</summary>
    public int? StackedFrames =>
        ArchitectureModule.stackedFrames(Inner.Architecture) is { } f ? f.Value : null;

    /// <summary>The per-sample input shape (per frame for event data), e.g. [1, 28, 28].</summary>
    public int[] InputShape => (int[])Inner.Architecture.InputShape.Clone();

    /// <summary>Number of classes K.</summary>
    public int Classes => Inner.Architecture.Classes;

    /// <summary>Total number of trainable scalars.</summary>
    public long ParameterCount => ModelModule.parameterCount(Inner);

    /// <summary>Names of the parameter tensors in order ("conv1.weight", "fc.bias", …).</summary>
    public IReadOnlyList<string> ParameterNames => Inner.Parameters.Names;

    /// <summary>Names of the spiking populations in forward order (valid membrane and spike probes).</summary>
    public IReadOnlyList<string> SpikingLayerNames =>
        ArchitectureModule.spikingNames(Inner.Architecture).ToArray();

    /// <summary>The parameter tensor of a name.</summary>
    /// <param name="name">A name from <see cref="ParameterNames"/>.</param>
    public Tensor GetParameter(string name)
    {
        Check.Name(name, nameof(name));
        return Inner.Parameters.TryFind(name) is { } t
            ? t.Value
            : throw new ArgumentException(
                $"The model has no parameter '{name}'; expected one of: {string.Join(", ", Inner.Parameters.Names)}.",
                nameof(name)
            );
    }

    /// <summary>The populations probed at a granularity (for membrane distillation).</summary>
    /// <param name="level">Conv-, block- or stage-wise.</param>
    public IReadOnlyList<string> ProbeNames(ProbeLevel level) =>
        Probes.names(ToFSharp(level), Inner.Architecture).ToArray();

    internal static ProbeGranularity ToFSharp(ProbeLevel level) =>
        level switch
        {
            ProbeLevel.ConvWise => ProbeGranularity.ConvWise,
            ProbeLevel.BlockWise => ProbeGranularity.BlockWise,
            ProbeLevel.StageWise => ProbeGranularity.StageWise,
            _ => throw new ArgumentOutOfRangeException(
                nameof(level),
                level,
                "level must be ConvWise, BlockWise or StageWise."
            ),
        };

    /// <summary>A one-screen table: layer, kind, detail and parameter count.</summary>
    public string Summary() => ModelModule.summary(Inner);

    /// <summary>The same parameters run at another number of time steps.</summary>
    /// <param name="steps">T ≥ 1.</param>
    /// <exception cref="InvalidOperationException">The model stacks frames (<see cref="StackedFrames"/>): it reads a whole sequence as one sample and has no per-step twin.</exception>
    public SnnModel WithSteps(int steps)
    {
        Check.Positive(steps, nameof(steps), "steps (the number of time steps T)");
        if (StackedFrames is { } f)
        {
            throw new InvalidOperationException(
                $"{Name} stacks {f} frames along channels into one sample, so it has no SNN twin to run at T = {steps}. Create the SNN without StackFrames (ZooOptions.StackFrames = 0)."
            );
        }
        return new SnnModel(ModelModule.withSteps(steps, Inner), Quantization);
    }

    /// <summary>The ANN twin with the same parameters.</summary>
    public SnnModel AsAnn() => new(ModelModule.asAnn(Inner), Quantization);

    /// <summary>
    /// The model with every conv and linear weight fake-quantized to <see cref="QuantizationOptions.WeightBits"/>
    /// (MINT's tanh-mapped symmetric grid with α = max|tanh w|); full precision returns this model.
    /// </summary>
    /// <param name="options">The bit widths.</param>
    public SnnModel QuantizeWeights(QuantizationOptions options)
    {
        Check.NotNull(options, nameof(options));
        options.Validate();
        if (options.WeightBits is null)
        {
            return this;
        }
        var weights = new HashSet<string>(
            ArchitectureModule
                .layers(Inner.Architecture)
                .Where(p => p.Item2.IsConv2d || p.Item2.IsLinear)
                .Select(p => p.Item1 + ".weight"),
            StringComparer.Ordinal
        );
        var bits = options.WeightBitsFSharp;
        var tensors = Inner
            .Parameters.Names.Select(n =>
                weights.Contains(n)
                    ? Quantizer.mintMax(bits, Inner.Parameters[n])
                    : Inner.Parameters[n]
            )
            .ToArray();
        var ps = ParametersModule.withValues(Inner.Parameters, tensors);
        return new SnnModel(
            new Model(Inner.Architecture, Inner.Mode, ps, Inner.Buffers),
            Quantization
        );
    }

    /// <summary>
    /// The quantization-aware twin of this model for training: every Conv2d/Linear weight (and its
    /// bias) runs through MINT's quantizer with a new learnable scale "&lt;layer&gt;.alpha", batch norm
    /// optionally folded into the conv before it, and each population's membrane quantized after every
    /// update. The plan travels with the model (its buffers), so training, checkpoints and
    /// <see cref="WithSteps"/> keep it. Unlike <see cref="QuantizeWeights"/> (post-training rounding of
    /// the weights alone) the quantizers sit in the forward pass and are trained through straight-through
    /// gradients. Full precision with <see cref="QuantizationOptions.FoldBatchNorm"/> false computes the
    /// original model.
    /// </summary>
    /// <param name="options">Bit widths (membrane bits in 1…16) and the recipe switches.</param>
    /// <exception cref="ArgumentException">The model already carries a quantization plan, or a named layer does not exist.</exception>
    public SnnModel Quantize(QuantizationOptions options)
    {
        Check.NotNull(options, nameof(options));
        options.Validate();
        if (IsQuantized)
        {
            throw new ArgumentException(
                $"the model {Name} is already quantized; call Quantize on the full-precision model.",
                nameof(options)
            );
        }
        var cfg = options.ToQuantConfig();
        try
        {
            return new SnnModel(ModelModule.quantize(cfg, Inner), cfg);
        }
        catch (SnnSpecException e)
        {
            throw new ArgumentException(e.Message, nameof(options), e);
        }
    }

    /// <summary>
    /// The quantized model with every weight scale "&lt;layer&gt;.alpha" set from what its quantizer sees
    /// on the first training samples (for a conv folded with batch norm, the folded weight under their
    /// batch statistics), as MINT's starting scale 2·mean|W|/√Q. Call it once after
    /// <see cref="Quantize"/>, before training: at quantization only the unfolded weight is known, so
    /// folded weights would clip and the layers they feed would stay silent. To deploy without
    /// training, follow it with <see cref="FitScales"/>: the starting scale shrinks with the bit width
    /// and clips most weights at 4 bits and more until training moves it.
    /// </summary>
    /// <param name="data">Training data the model can read (never the test set).</param>
    /// <param name="samples">Samples used, the first ones, ≥ 1 (fewer when the data holds fewer).</param>
    /// <exception cref="ArgumentException">The model is not quantized, or the data does not fit it.</exception>
    public SnnModel CalibrateScales(Dataset data, int samples = 256)
    {
        Check.NotNull(data, nameof(data));
        Check.Positive(samples, nameof(samples));
        if (!IsQuantized)
        {
            throw new ArgumentException(
                $"the model {Name} has no quantization plan to calibrate; call Quantize first.",
                nameof(data)
            );
        }
        data.CheckReadableBy(this, null, "data", nameof(data));
        var indices = Enumerable.Range(0, Math.Min(samples, data.Count)).ToArray();
        var x = SnnSpec.Data.SampleSource.toTensor(data.Frames > 0, data.Source, indices);
        try
        {
            return new SnnModel(ModelModule.calibrateScales(x, Inner), Quantization);
        }
        catch (SnnSpecException e)
        {
            throw new ArgumentException(e.Message, nameof(data), e);
        }
    }

    /// <summary>
    /// Post-training scale search, for deploying a quantized model without training it: each
    /// quantized weight layer's scale, in forward order, becomes the one among a grid up to
    /// max|tanh W| that brings the model closest to its float twin on the first samples
    /// (<see cref="QuantizationTrajectory.Error"/>). The starting scales of <see cref="CalibrateScales"/>
    /// suit training, which learns them, but clip most weights at 4 bits and more.
    /// </summary>
    /// <param name="data">Training data the model can read (never the test set).</param>
    /// <param name="samples">Samples used, the first ones, ≥ 1.</param>
    /// <param name="candidates">Grid points per layer, ≥ 1 (each costs one forward pass).</param>
    /// <exception cref="ArgumentException">The model is not a quantized SNN, or the data does not fit it.</exception>
    public SnnModel FitScales(Dataset data, int samples = 256, int candidates = 16)
    {
        Check.Positive(candidates, nameof(candidates));
        var x = QuantizedInput(data, samples, nameof(data));
        try
        {
            return new SnnModel(
                SnnSpec.QuantTrajectory.fitScales(candidates, x, Inner),
                Quantization
            );
        }
        catch (SnnSpecException e)
        {
            throw new ArgumentException(e.Message, nameof(data), e);
        }
    }

    /// <summary>
    /// This quantized model against its float twin (the same parameters without the quantizers) on
    /// the first samples: spike agreement and membrane error per population and step, logit error
    /// and prediction agreement.
    /// </summary>
    /// <param name="data">Data the model can read.</param>
    /// <param name="samples">Samples used, the first ones, ≥ 1.</param>
    /// <exception cref="ArgumentException">The model is not a quantized SNN, or the data does not fit it.</exception>
    public QuantizationTrajectory CompareWithFloat(Dataset data, int samples = 256)
    {
        var x = QuantizedInput(data, samples, nameof(data));
        try
        {
            return new QuantizationTrajectory(SnnSpec.QuantTrajectory.compare(Inner, x));
        }
        catch (SnnSpecException e)
        {
            throw new ArgumentException(e.Message, nameof(data), e);
        }
    }

    private Tensor QuantizedInput(Dataset data, int samples, string param)
    {
        Check.NotNull(data, param);
        Check.Positive(samples, nameof(samples));
        if (!IsQuantized)
        {
            throw new ArgumentException(
                $"the model {Name} has no quantization plan; call Quantize (and CalibrateScales) first.",
                param
            );
        }
        if (IsAnn)
        {
            throw new ArgumentException(
                $"the model {Name} runs as an ANN, which has no spikes or membranes; use WithSteps.",
                param
            );
        }
        data.CheckReadableBy(this, null, "data", param);
        var indices = Enumerable.Range(0, Math.Min(samples, data.Count)).ToArray();
        return SnnSpec.Data.SampleSource.toTensor(data.Frames > 0, data.Source, indices);
    }

    /// <summary>True when the model carries a quantization-aware training plan (see <see cref="Quantize"/>).</summary>
    public bool IsQuantized => ModelModule.quantPlan(Inner).IsQuantized;

    /// <summary>Runs the model on a batch.</summary>
    /// <param name="input">A static batch [B, …InputShape] (repeated over T) or a sequence [T, B, …InputShape].</param>
    /// <param name="options">Mode and probes; null is evaluation mode with logits only.</param>
    /// <returns>Per-step logits [T, B, K] and the requested probes.</returns>
    public ForwardResult Forward(Tensor input, ForwardOptions? options = null)
    {
        Check.NotNull(input, nameof(input));
        CheckInput(input);
        var ctx = (options ?? ForwardOptions.Eval).ToFSharp();
        return new ForwardResult(
            Diff.noGrad(
                Microsoft.FSharp.Core.FuncConvert.FromFunc(() =>
                    ModelModule.forward(ctx, Inner, input)
                )
            )
        );
    }

    /// <summary>
    /// Runs the quantized model in integer arithmetic (docs/integer-export.md), in evaluation mode:
    /// every (weight → population) pair that can run in integers accumulates integer weight codes
    /// times spikes, fires against an integer threshold and leaks by a shift; the other layers
    /// (MINT keeps the first and the classifier digital) run in float as in <see cref="Forward(Tensor, ForwardOptions?)"/>.
    /// With uniform membranes the spikes equal <see cref="Forward(Tensor, ForwardOptions?)"/>'s; with MINT
    /// membranes see <see cref="IntegerAgreement"/>.
    /// </summary>
    /// <param name="input">A static batch [B, …InputShape] (repeated over T) or a sequence [T, B, …InputShape].</param>
    /// <param name="options">Probes; null is logits only. Training mode is not available.</param>
    /// <returns>Per-step logits [T, B, K], the requested probes and the layers that ran in integers.</returns>
    /// <exception cref="InvalidOperationException">The model is full precision or an ANN twin, or no layer of it can run in integers.</exception>
    /// <exception cref="ArgumentException">options asks for training mode.</exception>
    public ForwardResult ForwardInteger(Tensor input, ForwardOptions? options = null)
    {
        Check.NotNull(input, nameof(input));
        CheckInput(input);
        var probes = IntegerProbes(options, nameof(options));
        var view = IntegerView(nameof(ForwardInteger));
        var (output, ran) = IntegerExport.run(view, probes, Inner, input).ToValueTuple();
        return new ForwardResult(output, ran.ToArray());
    }

    /// <summary>
    /// The fraction of spikes (over every population an integer pair feeds) on which
    /// <see cref="ForwardInteger"/> and the fake-quantized <see cref="Forward(Tensor, ForwardOptions?)"/> agree:
    /// 1 with uniform membranes; with MINT membranes the integer datapath drops the tanh on the
    /// membrane, and the documented tolerance is 98 %.
    /// </summary>
    /// <param name="input">A static batch [B, …InputShape] or a sequence [T, B, …InputShape].</param>
    /// <returns>A fraction in [0, 1] (1 when no pair ran in integers on this input).</returns>
    /// <exception cref="InvalidOperationException">The model is full precision or an ANN twin, or no layer of it can run in integers.</exception>
    public double IntegerAgreement(Tensor input)
    {
        Check.NotNull(input, nameof(input));
        CheckInput(input);
        return IntegerExport.agreement(IntegerView(nameof(IntegerAgreement)), Inner, input);
    }

    /// <summary>The probes of options for an integer run, which has no training mode.</summary>
    internal static ProbeRequest IntegerProbes(ForwardOptions? options, string name)
    {
        var o = options ?? ForwardOptions.Eval;
        if (o.Training)
        {
            throw new ArgumentException(
                "the integer datapath runs in evaluation mode only; leave ForwardOptions.Training false (run Forward for a training-mode pass).",
                name
            );
        }
        return o.ToFSharp().Probes;
    }

    /// <summary>
    /// Opens a stream: the SNN run over a sequence chunk by chunk, each chunk starting from the
    /// neuron states the previous one ended in. In evaluation mode the chunks' per-step logits are
    /// those of one run over the whole sequence, with one chunk's activations in memory.
    /// </summary>
    /// <exception cref="InvalidOperationException">The model is an ANN twin or stacks its frames.</exception>
    public ModelStream OpenStream()
    {
        CheckStreamable();
        return new ModelStream(this, null);
    }

    /// <summary>
    /// Opens a stream that runs in integer arithmetic (<see cref="ForwardInteger"/>), chunk by chunk:
    /// each chunk's integer membranes start where the previous chunk's ended, so the chunks' spikes
    /// are those of one <see cref="ForwardInteger"/> run over the whole sequence.
    /// </summary>
    /// <exception cref="InvalidOperationException">The model is an ANN twin, stacks its frames, is full precision, or has no layer that can run in integers.</exception>
    public ModelStream OpenIntegerStream()
    {
        CheckStreamable();
        return new ModelStream(this, IntegerView(nameof(OpenIntegerStream)));
    }

    private void CheckStreamable()
    {
        if (IsAnn || StackedFrames is not null)
        {
            throw new InvalidOperationException(
                $"{Name} cannot stream: "
                    + (
                        IsAnn
                            ? "the ANN twin has no neuron state; run Forward on the whole input."
                            : "it stacks its frames into one sample; build it with ZooOptions.StackFrames = 0."
                    )
            );
        }
    }

    /// <summary>Runs the model on a batch given as a flat row-major array.</summary>
    /// <param name="input">B × ∏InputShape values, row-major; for a model that stacks T frames (<see cref="StackedFrames"/>), T × B × ∏InputShape values, time-major.</param>
    /// <param name="batchSize">B ≥ 1.</param>
    /// <returns>The per-step logits [T, B, K].</returns>
    public float[,,] Forward(float[] input, int batchSize)
    {
        Check.NotNull(input, nameof(input));
        Check.Positive(batchSize, nameof(batchSize), "batchSize");
        var lead = StackedFrames is { } frames ? new[] { frames, batchSize } : new[] { batchSize };
        return Forward(FlatInput(input, lead, nameof(input), $"a batch of {batchSize} samples"))
            .LogitsPerStep();
    }

    /// <summary>
    /// The tensor [lead…, …InputShape] of a flat row-major array, its length checked first; the
    /// error names the array and what its values should hold.
    /// </summary>
    internal Tensor FlatInput(float[] values, int[] lead, string name, string holds)
    {
        var shape = lead.Concat(Inner.Architecture.InputShape).ToArray();
        long expected = shape.Aggregate(1L, (a, d) => a * d);
        if (values.LongLength != expected)
        {
            throw new ArgumentException(
                $"{name} has {values.Length} values but {holds} of shape [{string.Join(", ", Inner.Architecture.InputShape)}] need {expected}.",
                name
            );
        }
        return Tensors.TensorOps.FromArray(values, shape);
    }

    internal void CheckInput(Tensor input)
    {
        var inShape = Inner.Architecture.InputShape;
        var s = input.Shape;
        bool batch = s.Length == inShape.Length + 1;
        bool seq = s.Length == inShape.Length + 2;
        if ((!batch && !seq) || !s.Skip(s.Length - inShape.Length).SequenceEqual(inShape))
        {
            throw new ArgumentException(
                $"input has shape [{string.Join(", ", s)}]; {Name} takes a batch [B, {string.Join(", ", inShape)}] or a sequence [T, B, {string.Join(", ", inShape)}].",
                nameof(input)
            );
        }
        if (StackedFrames is { } f && (!seq || s[0] != f))
        {
            throw new ArgumentException(
                $"input has shape [{string.Join(", ", s)}]; {Name} stacks {f} frames and takes a sequence [{f}, B, {string.Join(", ", inShape)}].",
                nameof(input)
            );
        }
        if (seq && !IsAnn && StackedFrames is null && s[0] != Steps)
        {
            throw new ArgumentException(
                $"input is a sequence of {s[0]} steps but the model runs T = {Steps}; use WithSteps({s[0]}) or pass a static batch.",
                nameof(input)
            );
        }
    }

    /// <inheritdoc />
    public override string ToString() =>
        $"{Name} ({(IsAnn ? "ANN" : $"SNN, T = {Steps}")}, {ParameterCount} parameters)";
}
