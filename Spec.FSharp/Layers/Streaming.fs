namespace SnnSpec

/// What a stream carries from one chunk to the next: every spiking population's state V ([B, …],
/// after the last step run; empty before the first chunk) and the number of steps run so far.
type StreamState =
    {
        States: Map<string, Tensor>
        Steps: int
    }

    /// Before the first chunk: every population at rest.
    static member Start = { States = Map.empty; Steps = 0 }

/// Streaming inference: an SNN run over a sequence in consecutive chunks, each from the neuron
/// states the previous one ended in (ForwardContext.InitialStates). In eval mode the per-step
/// logits of the chunks, concatenated, are those of one run over the whole sequence, while only one
/// chunk's activations exist at a time: sequences longer than memory holds, or inputs that arrive
/// while the model runs (an event camera's frames).
module Streaming =
    /// The next chunk x [t, B, …InputShape] (t ≥ 1 frames, one per step) of a stream through the SNN
    /// m, run by <c>forward states chunkModel x</c> (chunkModel is m at t steps; forward starts every
    /// population from states and returns its output, whose FinalStates carry on, and anything else
    /// the caller reports). Returns the chunk's forward output, the state after its last step and
    /// forward's extra result; <c>op</c> names the caller in errors.
    let stepBy
        (op: string)
        (forward: Map<string, Tensor> -> Model -> Tensor -> ForwardOutput * 'extra)
        (m: Model)
        (state: StreamState)
        (x: Tensor)
        : ForwardOutput * StreamState * 'extra =
        match m.Mode with
        | ExecutionMode.Ann ->
            Errors.invalidArg
                op
                "model"
                m.Architecture.Name
                "an SNN (the ANN twin has no neuron state to carry; run it on the whole input)"
        | ExecutionMode.Snn _ -> ()

        let inRank = m.Architecture.InputShape.Length

        if x.Rank <> inRank + 2 then
            Errors.shapeMismatch
                op
                [ x.Shape; Array.append [| -1; -1 |] m.Architecture.InputShape ]
                (sprintf
                    "a chunk is a sequence [t, B, %s] of t ≥ 1 frames (for a static input, repeat it over the chunk's steps)"
                    (System.String.Join(", ", m.Architecture.InputShape)))

        if x.Shape[0] < 1 then
            Errors.invalidArg op "chunk" (Errors.showShape x.Shape) "at least one step (t ≥ 1)"

        let out, extra = forward state.States (Model.withSteps x.Shape[0] m) x

        out,
        {
            States = out.FinalStates
            Steps = state.Steps + x.Shape[0]
        },
        extra

    /// Runs the next chunk x [t, B, …InputShape] (t ≥ 1 frames, one per step) of a stream through
    /// the SNN m with the context ctx (its InitialStates are replaced by the state's), from state.
    /// Returns the chunk's forward output (logits [t, B, K]) and the state after its last step.
    let stepWith (ctx: ForwardContext) (m: Model) (state: StreamState) (x: Tensor) : ForwardOutput * StreamState =
        let out, next, () =
            stepBy
                "Streaming.step"
                (fun states chunk x -> Model.forward { ctx with InitialStates = Some states } chunk x, ())
                m
                state
                x

        out, next

    /// stepWith in eval mode without probes.
    let step (m: Model) (state: StreamState) (x: Tensor) = stepWith ForwardContext.Eval m state x

    /// Runs a whole sequence x [T, B, …] in chunks of at most chunkSteps steps: the per-step logits
    /// [T, B, K] of <c>Model.forward</c> in eval mode on x, computed with one chunk's activations alive.
    let run (chunkSteps: int) (m: Model) (x: Tensor) : Tensor =
        if chunkSteps < 1 then
            Errors.invalidArg "Streaming.run" "chunkSteps" chunkSteps "at least 1 step per chunk"

        if x.Rank < 1 || x.Shape[0] < 1 then
            Errors.invalidArg "Streaming.run" "x" (Errors.showShape x.Shape) "a sequence [T, B, …] with T ≥ 1"

        let total = x.Shape[0]

        let rec go (start: int) (state: StreamState) (acc: Tensor list) =
            if start >= total then
                List.rev acc
            else
                let len = min chunkSteps (total - start)
                let out, state' = step m state (Tensor.narrow 0 start len x)
                go (start + len) state' (out.Logits :: acc)

        Diff.noGrad (fun () -> Tensor.cat 0 (go 0 StreamState.Start []))
