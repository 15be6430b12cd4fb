namespace SnnSpec

open System
open System.Text

/// A model value: its architecture, how it executes (SNN with T steps, or the ANN twin), its
/// parameters and its buffers (BN running statistics). The forward function is pure.
type Model =
    {
        Architecture: Architecture
        Mode: ExecutionMode
        Parameters: Parameters
        Buffers: Parameters
    }

module Model =
    /// A freshly initialised model; the same seed gives the same values.
    let init (seed: int) (mode: ExecutionMode) (arch: Architecture) =
        let ps, bs = Init.parameters seed arch

        {
            Architecture = arch
            Mode = mode
            Parameters = ps
            Buffers = bs
        }

    /// Runs the model with explicit parameters (the function to differentiate in training).
    let apply (ctx: ForwardContext) (m: Model) (ps: Parameters) (x: Tensor) =
        Forward.run m.Architecture m.Mode ctx ps m.Buffers x

    /// Runs the model with its own parameters.
    let forward (ctx: ForwardContext) (m: Model) (x: Tensor) = apply ctx m m.Parameters x

    /// The same parameters run at another T (SNN) — a versatile-teacher student or a deployment at t ≤ T.
    let withSteps (steps: int) (m: Model) =
        { m with
            Mode = ExecutionMode.Snn steps
        }

    /// The ANN twin with the same parameters (every spiking layer becomes a ReLU).
    let asAnn (m: Model) = { m with Mode = ExecutionMode.Ann }

    /// Total trainable scalars.
    let parameterCount (m: Model) = m.Parameters.ElementCount

    /// A one-screen table: layer, kind, output detail, parameter count.
    let summary (m: Model) =
        let sb = StringBuilder()

        let modeText =
            match m.Mode with
            | ExecutionMode.Snn t -> sprintf "SNN, T = %d" t
            | ExecutionMode.Ann -> "ANN"

        sb.AppendLine(
            sprintf
                "%s (%s), input %s, %d classes"
                m.Architecture.Name
                modeText
                (Errors.showShape m.Architecture.InputShape)
                m.Architecture.Classes
        )
        |> ignore

        let count (name: string) =
            m.Parameters.Names
            |> Array.filter (fun n -> n.StartsWith(name + "."))
            |> Array.sumBy (fun n -> int64 m.Parameters[n].Numel)

        for name, layer in Architecture.layers m.Architecture do
            let detail =
                match layer with
                | Conv2d(_, i, o, k, s, p, _) -> sprintf "conv %d→%d k%d s%d p%d" i o k s p
                | Linear(_, i, o, _) -> sprintf "linear %d→%d" i o
                | Norm(_, c, _) -> sprintf "batch norm %d" c
                | Spiking(_, n) -> sprintf "spiking %A θ=%g %O" n.Dynamics n.Threshold n.Surrogate
                | Relu _ -> "relu"
                | Residual(_, k, _, _, _) -> sprintf "residual %A" k
                | Stage _ -> "stage"
                | Tap _ -> "tap"
                | _ -> ""

            match layer with
            | Conv2d _
            | Linear _
            | Norm _
            | Spiking _
            | Residual _
            | Stage _
            | Tap _ ->
                let depth = name.Split('.').Length - 1

                sb.AppendLine(sprintf "  %-34s %-44s %10d" (String(' ', 2 * depth) + name) detail (count name))
                |> ignore
            | _ -> ()

        sb.AppendLine(sprintf "  total parameters: %d" (parameterCount m)) |> ignore
        sb.ToString()
