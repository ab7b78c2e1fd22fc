"""``python -m datasets.make_sine_data [--data_dir DIR]``: write the sines files (10 and 50
times, regular and irregular)."""

import argparse

from datasets import DATA_DIR, sines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--data_dir', default=str(DATA_DIR), help=f'default {DATA_DIR}')
    args = parser.parse_args(argv)
    sines.generate(args.data_dir)
    print(f'wrote {args.data_dir}/sines/<ntimes>_<regular|irregular>/{{train,val}}.npz')


if __name__ == '__main__':
    main()
