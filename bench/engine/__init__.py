"""valbench.engine: trains many submodels at once, one per subset mask.

engine           the facade `Engine`: model keys, device, memory and chunk planning; picks a trainer
convex_trainer   logreg submodels: batched L-BFGS from the full-data fit (the `convex` models)
network_trainer  mlp / cnn / resnet9 submodels: minibatch steps on stacked parameters
convex           the logreg objective f_b (scikit-learn's, scaled) and its preconditioner
lbfgs            batched L-BFGS: curvature memory, line search, the working set of running models
chunks           masks in chunks, on threads
models           the network architectures and their shape checks
specs            the frozen specs (convex / network / options) an Engine is built from
randomness       per-mask seeds: the same mask gets the same positions wherever it is trained
continuation     further training of a trained model (the gold standard of methods/further_training)
device           where a run happened (device, CPU model, package versions) for records; torch-free
loop             the per-model torch loop: the reference the networks are tested and timed against
"""
