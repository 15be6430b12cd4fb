namespace SnnSpec

open System

/// Initial parameters and buffers of an architecture. Each tensor's key is derived from the seed
/// and the tensor's name (not its position), so adding a layer leaves the others' values unchanged.
module Init =
    /// FNV-1a of a name: a stable, platform-independent hash.
    let private nameHash (s: string) =
        let mutable h = 2166136261u

        for c in s do
            h <- (h ^^^ uint32 c) * 16777619u

        int h

    let private key (rng: Rng) (name: string) = Rng.fold (nameHash name) rng

    let rec private walk
        (rng: Rng)
        (prefix: string)
        (layers: LayerSpec list)
        : (string * Tensor) list * (string * Tensor) list =
        let full n =
            if prefix = "" then n else prefix + "." + n

        let parts =
            layers
            |> List.map (fun l ->
                match l with
                | Conv2d(n, cin, cout, k, _, _, bias) ->
                    let name = full n
                    // Kaiming normal, fan-out mode, ReLU gain (torchvision's ResNet/VGG init).
                    let std = MathF.Sqrt(2.0f / float32 (cout * k * k))
                    let w = Tensor.randn (key rng (name + ".weight")) [| cout; cin; k; k |] * std

                    let b =
                        if bias then
                            [ name + ".bias", Tensor.zeros [| cout |] ]
                        else
                            []

                    (name + ".weight", w) :: b, []
                | Linear(n, fin, fout, bias) ->
                    let name = full n
                    // PyTorch's default: U(−1/√in, 1/√in) for weight and bias.
                    let bound = 1.0f / MathF.Sqrt(float32 fin)
                    let w = Tensor.uniform (key rng (name + ".weight")) -bound bound [| fout; fin |]

                    let b =
                        if bias then
                            [
                                name + ".bias", Tensor.uniform (key rng (name + ".bias")) -bound bound [| fout |]
                            ]
                        else
                            []

                    (name + ".weight", w) :: b, []
                | Norm(n, c, _) ->
                    let name = full n

                    [ name + ".weight", Tensor.ones [| c |]; name + ".bias", Tensor.zeros [| c |] ],
                    [
                        name + ".running_mean", Tensor.zeros [| c |]
                        name + ".running_var", Tensor.ones [| c |]
                    ]
                | Spiking(n, neuron) ->
                    match neuron.Dynamics with
                    | Dynamics.Plif(w, _) -> [ full n + ".w", w ], []
                    | _ -> [], []
                | Residual(n, _, main, sc, after) ->
                    let a = walk rng (full n) main
                    let b = walk rng (full n) sc
                    let c = walk rng (full n) after
                    fst a @ fst b @ fst c, snd a @ snd b @ snd c
                | Stage(n, ls) -> walk rng (full n) ls
                | _ -> [], [])

        List.collect fst parts, List.collect snd parts

    /// (parameters, buffers) for an architecture from a seed.
    let parameters (seed: int) (arch: Architecture) =
        let ps, bs = walk (Rng.create seed) "" arch.Layers
        Parameters.ofList ps, Parameters.ofList bs
