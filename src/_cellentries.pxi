# The untyped part functions of a cell module (_cellparts.pxd), included by
# each: forward_part and backward_part pick the module's forward_part_of /
# backward_part_of (fused over floating; a tag argument specializes them)
# by is_double.

cdef void forward_part(void* args, int part, int n_parts) noexcept nogil:
    if (<CellArgs*>args).is_double:
        forward_part_of(<CellArgs*>args, part, n_parts, <double>0)
    else:
        forward_part_of(<CellArgs*>args, part, n_parts, <float>0)


cdef void backward_part(void* args, int part, int n_parts) noexcept nogil:
    if (<CellArgs*>args).is_double:
        backward_part_of(<CellArgs*>args, part, n_parts, <double>0)
    else:
        backward_part_of(<CellArgs*>args, part, n_parts, <float>0)
