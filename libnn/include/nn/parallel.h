// The one thread knob: NN_NUM_THREADS in the environment, or set_num_threads(); default = the
// number of hardware threads.
#pragma once

namespace nn {

void set_num_threads(int n);
int get_num_threads();

}  // namespace nn
