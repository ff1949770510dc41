// The one thread knob: NN_NUM_THREADS in the environment, or set_num_threads(); default = the
// number of hardware threads.
#pragma once

namespace nn {

void set_num_threads(int n);
// The threads the calling thread's nn work uses: the global setting, or the calling thread's own
// limit when set_this_thread_num_threads gave one.
int get_num_threads();
// A limit for the calling thread only (0: none), e.g. 1 for a server's request workers while one
// batching thread runs the model on every core.
void set_this_thread_num_threads(int n);

}  // namespace nn
