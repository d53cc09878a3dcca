"""numba.cuda kernels (device twins of numdp.kernels.cpu); importing them imports numba.cuda."""
