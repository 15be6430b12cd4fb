namespace SnnSpec.HwSim

open SnnSpec

/// The kind of a weight layer the mapper places on crossbars.
[<RequireQualifiedAccess>]
type LayerKind =
    | Conv
    | FullyConnected

/// One weight layer as the cost model sees it: geometry only. Spatial sides are in pixels; a fully
/// connected layer has every side 1 and Kernel 1.
type Layer =
    {
        /// Full path name ("features.conv1"), unique in the network.
        Name: string
        Kind: LayerKind
        InChannels: int
        OutChannels: int
        /// Square kernel side k (1 for a fully connected layer).
        Kernel: int
        /// Input map H_in × W_in.
        InHeight: int
        InWidth: int
        /// The convolution's output map, before pooling.
        ConvHeight: int
        ConvWidth: int
        /// The map after any pooling that follows the layer (H_o of the ELA).
        OutHeight: int
        OutWidth: int
        /// Whether the layer's input is binary spikes (false for the directly encoded first layer or
        /// after average pooling of spikes).
        SpikeInput: bool
        /// The spiking population whose spikes feed this layer, if any.
        InputSource: string option
        /// The windows (k·k spikes each) of the max-pools between InputSource and this layer, in
        /// order; empty when the layer reads the population's spikes as they are.
        InputPooling: int list
    }

/// A network as an ordered list of weight layers (the forward, depth-first order of its tree).
type Network = { Name: string; Layers: Layer list }

module Layer =
    /// A conv layer of the ELA's layer list: stride 1 and "same" padding (conv map = input map),
    /// pooled to hOut × hOut; spike input.
    let conv (name: string) (inChannels: int) (outChannels: int) (kernel: int) (hIn: int) (hOut: int) =
        {
            Name = name
            Kind = LayerKind.Conv
            InChannels = inChannels
            OutChannels = outChannels
            Kernel = kernel
            InHeight = hIn
            InWidth = hIn
            ConvHeight = hIn
            ConvWidth = hIn
            OutHeight = hOut
            OutWidth = hOut
            SpikeInput = true
            InputSource = None
            InputPooling = []
        }

    /// A fully connected layer (in → out features); spike input.
    let linear (name: string) (inFeatures: int) (outFeatures: int) =
        {
            Name = name
            Kind = LayerKind.FullyConnected
            InChannels = inFeatures
            OutChannels = outFeatures
            Kernel = 1
            InHeight = 1
            InWidth = 1
            ConvHeight = 1
            ConvWidth = 1
            OutHeight = 1
            OutWidth = 1
            SpikeInput = true
            InputSource = None
            InputPooling = []
        }

    /// Raises SnnSpecException naming the layer and its first non-positive size.
    let validate (l: Layer) =
        let check field v =
            if v <= 0 then
                Errors.invalidArg ("layer '" + l.Name + "'") field v "a positive integer"

        check "InChannels" l.InChannels
        check "OutChannels" l.OutChannels
        check "Kernel" l.Kernel
        check "InHeight" l.InHeight
        check "InWidth" l.InWidth
        check "ConvHeight" l.ConvHeight
        check "ConvWidth" l.ConvWidth
        check "OutHeight" l.OutHeight
        check "OutWidth" l.OutWidth

        if l.Kind = LayerKind.FullyConnected && l.Kernel <> 1 then
            Errors.invalidArg ("layer '" + l.Name + "'") "Kernel" l.Kernel "1 for a fully connected layer"

    /// The geometry that identifies a layer across configurations (everything but activity links).
    let signature (l: Layer) =
        (l.Name,
         l.Kind,
         l.InChannels,
         l.OutChannels,
         l.Kernel,
         (l.InHeight, l.InWidth, l.ConvHeight, l.ConvWidth, l.OutHeight, l.OutWidth))

/// Derives the weight-layer list of an SnnSpec Architecture by walking its LayerSpec tree with the
/// per-sample shape: Conv2d maps (H + 2p − k)/s + 1 (floor), pooling (H − k)/s + 1, adaptive pooling
/// to its output side, Flatten to C·H·W features. Pooling after a weight layer (through norms,
/// neurons, dropout) sets that layer's pooled output map; after a residual block it applies to the
/// last weight layer of each branch. Layers are listed in depth-first order: residual main branch,
/// then shortcut, then the after-sum layers.
module Network =
    type private Shape =
        | Spatial of c: int * h: int * w: int
        | Flat of n: int

    let private show s =
        match s with
        | Spatial(c, h, w) -> sprintf "[%d, %d, %d]" c h w
        | Flat n -> sprintf "[%d]" n

    type private State =
        {
            Shape: Shape
            /// The current value is binary spikes.
            Spikes: bool
            /// The spiking population that produced the current value (while it is still spikes).
            Source: string option
            /// Max-pool windows applied to Source's spikes since the population.
            Pooling: int list
            /// Weight layers (indices) whose output is the current value, up to pooling.
            Pending: int list
        }

    let private cannotPlace (what: string) (detail: string) =
        raise (SnnSpecException(sprintf "Mapping: cannot place %s: %s." what detail))

    /// The weight layers of an SnnSpec architecture for a per-sample input shape [C; H; W] or [F].
    let ofArchitectureAt (inputShape: int[]) (arch: Architecture) : Network =
        let layers = ResizeArray<Layer>()

        let start =
            match inputShape with
            | [| c; h; w |] when c > 0 && h > 0 && w > 0 -> Spatial(c, h, w)
            | [| f |] when f > 0 -> Flat f
            | _ -> Errors.invalidArg "Mapping.ofArchitecture" "InputShape" inputShape "[C; H; W] or [F], all positive"

        let full prefix n =
            if prefix = "" then n else prefix + "." + n

        /// A pooling layer; <c>window</c> = Some (k·k) for a max-pool, which keeps spikes.
        let pool (st: State) (what: string) (f: int -> int) (window: int option) =
            match st.Shape with
            | Spatial(c, h, w) ->
                let h', w' = f h, f w

                if h' <= 0 || w' <= 0 then
                    cannotPlace what (sprintf "it reduces the map %s to %d×%d" (show st.Shape) h' w')

                for i in st.Pending do
                    layers[i] <-
                        { layers[i] with
                            OutHeight = h'
                            OutWidth = w'
                        }

                let spikes = st.Spikes && window.IsSome

                { st with
                    Shape = Spatial(c, h', w')
                    Spikes = spikes
                    Source = (if spikes then st.Source else None)
                    Pooling = (if spikes then st.Pooling @ Option.toList window else [])
                }
            | Flat _ -> cannotPlace what (sprintf "it needs a [C, H, W] map but receives %s" (show st.Shape))

        let rec walk (prefix: string) (st: State) (specs: LayerSpec list) : State = specs |> List.fold (step prefix) st

        and step (prefix: string) (st: State) (spec: LayerSpec) : State =
            match spec with
            | Conv2d(n, cin, cout, k, s, p, _) ->
                let name = full prefix n

                match st.Shape with
                | Spatial(c, h, w) when c = cin ->
                    if s <= 0 || k <= 0 || p < 0 then
                        cannotPlace ("layer '" + name + "'") (sprintf "kernel %d, stride %d, padding %d" k s p)

                    let hc = (h + 2 * p - k) / s + 1
                    let wc = (w + 2 * p - k) / s + 1

                    if h + 2 * p < k || w + 2 * p < k || hc <= 0 || wc <= 0 then
                        cannotPlace
                            ("layer '" + name + "'")
                            (sprintf "kernel %d does not fit the padded input %s" k (show st.Shape))

                    let layer =
                        {
                            Name = name
                            Kind = LayerKind.Conv
                            InChannels = cin
                            OutChannels = cout
                            Kernel = k
                            InHeight = h
                            InWidth = w
                            ConvHeight = hc
                            ConvWidth = wc
                            OutHeight = hc
                            OutWidth = wc
                            SpikeInput = st.Spikes
                            InputSource = st.Source
                            InputPooling = st.Pooling
                        }

                    Layer.validate layer
                    layers.Add layer

                    {
                        Shape = Spatial(cout, hc, wc)
                        Spikes = false
                        Source = None
                        Pooling = []
                        Pending = [ layers.Count - 1 ]
                    }
                | _ ->
                    cannotPlace
                        ("layer '" + name + "'")
                        (sprintf "it expects %d input channels as [C, H, W] but receives %s" cin (show st.Shape))
            | Linear(n, fin, fout, _) ->
                let name = full prefix n

                match st.Shape with
                | Flat f when f = fin ->
                    let layer =
                        { Layer.linear name fin fout with
                            SpikeInput = st.Spikes
                            InputSource = st.Source
                            InputPooling = st.Pooling
                        }

                    Layer.validate layer
                    layers.Add layer

                    {
                        Shape = Flat fout
                        Spikes = false
                        Source = None
                        Pooling = []
                        Pending = [ layers.Count - 1 ]
                    }
                | Spatial _ ->
                    cannotPlace
                        ("layer '" + name + "'")
                        (sprintf "it expects %d flat features but receives %s (insert Flatten)" fin (show st.Shape))
                | Flat _ ->
                    cannotPlace
                        ("layer '" + name + "'")
                        (sprintf "it expects %d input features but receives %s" fin (show st.Shape))
            | Norm(n, ch, _) ->
                match st.Shape with
                | Spatial(c, _, _)
                | Flat c when c = ch ->
                    { st with
                        Spikes = false
                        Source = None
                        Pooling = []
                    }
                | _ ->
                    cannotPlace
                        ("layer '" + full prefix n + "'")
                        (sprintf "it normalises %d channels but receives %s" ch (show st.Shape))
            | Spiking(n, _) ->
                { st with
                    Spikes = true
                    Source = Some(full prefix n)
                    Pooling = []
                }
            | Relu _ ->
                { st with
                    Spikes = false
                    Source = None
                    Pooling = []
                }
            | MaxPool(k, s) ->
                if k <= 0 || s <= 0 then
                    cannotPlace (sprintf "MaxPool(%d, %d)" k s) "kernel and stride must be positive"

                pool st (sprintf "MaxPool(%d, %d)" k s) (fun x -> if x < k then 0 else (x - k) / s + 1) (Some(k * k))
            | AvgPool(k, s) ->
                if k <= 0 || s <= 0 then
                    cannotPlace (sprintf "AvgPool(%d, %d)" k s) "kernel and stride must be positive"

                pool st (sprintf "AvgPool(%d, %d)" k s) (fun x -> if x < k then 0 else (x - k) / s + 1) None
            | AdaptiveAvgPool o -> pool st (sprintf "AdaptiveAvgPool(%d)" o) (fun _ -> o) None
            | Flatten ->
                match st.Shape with
                | Spatial(c, h, w) -> { st with Shape = Flat(c * h * w) }
                | Flat _ -> st
            | Dropout _
            | RepeatOverTime
            | Tap _ -> st
            | StackFrames f ->
                match st.Shape with
                | Spatial(c, h, w) -> { st with Shape = Spatial(c * f, h, w) }
                | Flat c -> { st with Shape = Flat(c * f) }
            | Stage(n, ls) -> walk (full prefix n) st ls
            | Residual(n, kind, main, shortcut, after) ->
                let name = full prefix n
                let inner = { st with Pending = [] }
                let m = walk name inner main

                let sc =
                    if List.isEmpty shortcut then
                        inner
                    else
                        walk name inner shortcut

                if m.Shape <> sc.Shape then
                    cannotPlace
                        ("residual block '" + name + "'")
                        (sprintf "its main branch gives %s but its shortcut gives %s" (show m.Shape) (show sc.Shape))

                let spikes =
                    match kind with
                    | ResidualKind.SewIAnd -> m.Spikes && sc.Spikes
                    | ResidualKind.Add
                    | ResidualKind.SewAdd
                    | ResidualKind.Membrane -> false

                let merged =
                    {
                        Shape = m.Shape
                        Spikes = spikes
                        Source = (if spikes then m.Source else None)
                        Pooling = (if spikes then m.Pooling else [])
                        Pending = m.Pending @ (if List.isEmpty shortcut then [] else sc.Pending)
                    }

                walk name merged after

        walk
            ""
            {
                Shape = start
                Spikes = false
                Source = None
                Pooling = []
                Pending = []
            }
            arch.Layers
        |> ignore

        {
            Name = arch.Name
            Layers = List.ofSeq layers
        }

    /// The weight layers of an SnnSpec architecture at its own InputShape.
    let ofArchitecture (arch: Architecture) = ofArchitectureAt arch.InputShape arch

    /// Raises SnnSpecException for an empty network, a duplicate name or a layer with a bad size.
    let validate (n: Network) =
        if List.isEmpty n.Layers then
            Errors.invalidArg "Network" "Layers" n.Name "at least one weight layer"

        n.Layers |> List.iter Layer.validate

        n.Layers
        |> List.countBy (fun l -> l.Name)
        |> List.tryFind (fun (_, c) -> c > 1)
        |> Option.iter (fun (name, _) ->
            Errors.fail (sprintf "Network '%s': layer name '%s' is used twice." n.Name name))
