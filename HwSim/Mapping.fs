namespace SnnSpec.HwSim

open System.Text
open SnnSpec

/// One weight layer's placement on the chip (methods.md §6.2, kernel-wise mapping).
type LayerMapping =
    {
        Layer: Layer
        /// Columns per weight s_w (§6.9).
        Slices: int
        /// Kernel taps k², one crossbar per tap.
        Taps: int
        /// Row blocks per tap ⌈C_in / X⌉.
        RowBlocks: int
        /// Column blocks ⌈C_out · s_w / X⌉.
        ColumnBlocks: int
        /// Crossbars holding the layer's weights: taps · row blocks · column blocks.
        Crossbars: int
        /// PEs PE_l = ⌈taps · row blocks / crossbars per PE⌉ · column blocks.
        Pes: int
        /// Index of the layer's first PE (layers are packed contiguously, so a tile may span layers).
        FirstPe: int
        /// Tiles the layer's PEs fall into (inclusive range).
        FirstTile: int
        LastTile: int
        /// Feature-map side the cycles are counted on (per Accelerator.Spatial).
        MapHeight: int
        MapWidth: int
        /// PE cycles per time step: PE_l · H · W.
        CyclesPerStep: int64
        /// Output neurons per step times slices, s_w · C_out · H · W (the ELA's latency unit, §6.5).
        OutputsPerStep: int64
    }

/// A network placed on an accelerator.
type Mapping =
    {
        Accelerator: Accelerator
        Network: Network
        Layers: LayerMapping list
        /// N_PE = Σ PE_l.
        TotalPes: int
        /// N_tile = ⌈N_PE / ppt⌉.
        Tiles: int
    }

/// Per-layer crossbar tiling (methods.md §6.2, generalised):
/// - PE_l = ⌈k_l² · ⌈C_in/X⌉ / P⌉ · ⌈s_w · C_out/X⌉ with P crossbars per PE; for k_l² = P this is the
///   ELA's ⌈C_in/X⌉ · ⌈C_out/X⌉, and smaller kernels (1×1, fully connected) pack row blocks into a PE;
/// - cycles_l = PE_l · H · W per step (the ELA's ⌈C_out/X⌉ · ⌈C_in/X⌉ · H_o²);
/// - N_tile = ⌈Σ PE_l / ppt⌉, layers packed contiguously.
/// Unlike the ELA there is no layer-order precondition and no layer-count limit.
module Mapping =
    let private ceilDiv (a: int) (b: int) = (a + b - 1) / b

    /// Places every layer of a network.
    let map (acc: Accelerator) (net: Network) : Mapping =
        Accelerator.validate acc
        Network.validate net
        let x = acc.CrossbarSize
        let s = Precision.slices acc.Precision

        let layers, totalPes =
            net.Layers
            |> List.mapFold
                (fun firstPe (l: Layer) ->
                    let taps = l.Kernel * l.Kernel
                    let rows = ceilDiv l.InChannels x
                    let cols = ceilDiv (s * l.OutChannels) x
                    let pes = ceilDiv (taps * rows) acc.CrossbarsPerPe * cols

                    let h, w =
                        match acc.Spatial with
                        | SpatialRule.PooledOutput -> l.OutHeight, l.OutWidth
                        | SpatialRule.ConvOutput -> l.ConvHeight, l.ConvWidth

                    {
                        Layer = l
                        Slices = s
                        Taps = taps
                        RowBlocks = rows
                        ColumnBlocks = cols
                        Crossbars = taps * rows * cols
                        Pes = pes
                        FirstPe = firstPe
                        FirstTile = firstPe / acc.PesPerTile
                        LastTile = (firstPe + pes - 1) / acc.PesPerTile
                        MapHeight = h
                        MapWidth = w
                        CyclesPerStep = int64 pes * int64 h * int64 w
                        OutputsPerStep = int64 s * int64 l.OutChannels * int64 h * int64 w
                    },
                    firstPe + pes)
                0

        {
            Accelerator = acc
            Network = net
            Layers = layers
            TotalPes = totalPes
            Tiles = ceilDiv totalPes acc.PesPerTile
        }

    /// Maps the weight layers of an SnnSpec architecture at its InputShape (see Network.ofArchitecture).
    let ofArchitecture (acc: Accelerator) (arch: Architecture) = map acc (Network.ofArchitecture arch)

    /// Maps the weight layers of an SnnSpec architecture at another per-sample input shape [C; H; W] or [F].
    let ofArchitectureAt (acc: Accelerator) (inputShape: int[]) (arch: Architecture) =
        map acc (Network.ofArchitectureAt inputShape arch)

    /// Total PE cycles per time step Σ cycles_l.
    let cyclesPerStep (m: Mapping) =
        m.Layers |> List.sumBy (fun l -> l.CyclesPerStep)

    /// The mapping as a fixed-width text table, one row per layer plus a total row.
    let table (m: Mapping) : string =
        let sb = StringBuilder()

        let row (cells: string list) =
            let widths = [ 28; 5; 6; 6; 3; 9; 9; 5; 5; 6; 7; 12 ]

            List.zip widths cells
            |> List.iteri (fun i (w, c) ->
                if i = 0 then
                    sb.Append(c.PadRight w) |> ignore
                else
                    sb.Append(' ').Append(c.PadLeft w) |> ignore)

            sb.AppendLine() |> ignore

        row
            [
                "layer"
                "kind"
                "C_in"
                "C_out"
                "k"
                "H_in"
                "H_map"
                "rows"
                "cols"
                "PEs"
                "tiles"
                "cycles/step"
            ]

        for l in m.Layers do
            let g = l.Layer

            row
                [
                    g.Name
                    (match g.Kind with
                     | LayerKind.Conv -> "conv"
                     | LayerKind.FullyConnected -> "fc")
                    string g.InChannels
                    string g.OutChannels
                    string g.Kernel
                    sprintf "%dx%d" g.InHeight g.InWidth
                    sprintf "%dx%d" l.MapHeight l.MapWidth
                    string l.RowBlocks
                    string l.ColumnBlocks
                    string l.Pes
                    (if l.FirstTile = l.LastTile then
                         string l.FirstTile
                     else
                         sprintf "%d-%d" l.FirstTile l.LastTile)
                    string l.CyclesPerStep
                ]

        row
            [
                "total"
                ""
                ""
                ""
                ""
                ""
                ""
                ""
                ""
                string m.TotalPes
                sprintf "%d" m.Tiles
                string (cyclesPerStep m)
            ]

        sb.ToString()
