"""``python -m datasets.make_ou_data [--data_dir DIR]``: write the Ornstein–Uhlenbeck files."""

import argparse

from common.arguments import positive_int
from datasets import DATA_DIR, ornstein_uhlenbeck


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--data_dir', default=str(DATA_DIR), help=f'default {DATA_DIR}')
    parser.add_argument('--n_train', type=positive_int, default=200,
                        help='training initial conditions (default 200)')
    parser.add_argument('--n_val', type=positive_int, default=20,
                        help='validation initial conditions (default 20)')
    parser.add_argument('--n_paths', type=positive_int, default=45,
                        help='sample paths per initial condition (default 45)')
    args = parser.parse_args(argv)
    ornstein_uhlenbeck.generate(args.data_dir, {'train': args.n_train, 'val': args.n_val},
                                args.n_paths)
    print(f'wrote {ornstein_uhlenbeck.folder(args.data_dir)}/{{train,val}}.npz')


if __name__ == '__main__':
    main()
